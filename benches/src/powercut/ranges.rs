//! Byte ranges of a file written since its last fsync: what a power cut takes back.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent half-open ranges `[start, end)`, kept merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// start -> end.
    map: BTreeMap<u64, u64>,
}

impl Ranges {
    /// Adds `[start, end)`, merging it with every range it overlaps or touches.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut lo, mut hi) = (start, end);
        // The range that starts at or before `start` may reach into the new one.
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e >= start {
                lo = s;
                hi = hi.max(e);
            }
        }
        let overlapping: Vec<u64> = self.map.range(lo..=hi).map(|(&s, _)| s).collect();
        for s in overlapping {
            let e = self.map.remove(&s).expect("listed");
            hi = hi.max(e);
        }
        self.map.insert(lo, hi);
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }

    /// Bytes covered.
    pub fn bytes(&self) -> u64 {
        self.iter().map(|(s, e)| e - s).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    fn list(r: &Ranges) -> Vec<(u64, u64)> {
        r.iter().collect()
    }

    #[test]
    fn ranges_merge_when_they_overlap_or_touch() {
        let mut r = Ranges::default();
        r.insert(10, 20);
        r.insert(30, 40);
        assert_eq!(list(&r), [(10, 20), (30, 40)]);
        r.insert(20, 25); // touches the first
        assert_eq!(list(&r), [(10, 25), (30, 40)]);
        r.insert(5, 35); // swallows the first, reaches into the second
        assert_eq!(list(&r), [(5, 40)]);
        r.insert(50, 50); // empty: ignored
        r.insert(0, 1);
        assert_eq!(list(&r), [(0, 1), (5, 40)]);
        assert_eq!(r.bytes(), 36);
        r.insert(1, 5);
        assert_eq!(list(&r), [(0, 40)]);
        r.clear();
        assert!(r.is_empty());
    }
}
