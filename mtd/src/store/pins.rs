//! Views pin the seqs they read: the merger never moves the horizon past the oldest pin.

use std::collections::BTreeMap;
use std::sync::Arc;

use rewind_formats::Seq;

use super::group::Group;
use super::{Result, StoreError};

/// Views pin the seqs they read: the merger never moves the horizon past the oldest pin.
#[derive(Default, Debug)]
pub(super) struct Pins {
    pub(super) counts: BTreeMap<u64, usize>,
    /// Horizon the merger is moving to; views older than this are refused from now on.
    pub(super) merging_to: u64,
}

impl Group {
    pub(crate) fn pin(self: &Arc<Self>, seq: Seq) -> Result<PinGuard> {
        let mut pins = self.pins.lock().expect("pins lock");
        let st = self.state.read().expect("group lock");
        let horizon = st.manifest.horizon_seq.max(pins.merging_to);
        if seq.0 < horizon {
            return Err(StoreError::PointTooOld {
                spec: format!("seq:{}", seq.0),
                horizon,
                detail: "the journal up to the horizon is merged into the base image".into(),
            });
        }
        *pins.counts.entry(seq.0).or_default() += 1;
        Ok(PinGuard {
            group: self.clone(),
            seq,
        })
    }

    /// Claim a merge horizon. `prefix_horizons[i]` is the horizon that merging the oldest i+1
    /// expired segments would reach (non-decreasing: merges take whole segments, oldest first).
    /// Takes the longest prefix that passes no pinned view and returns its length and horizon;
    /// views older than that horizon are refused from now on.
    pub(crate) fn claim_merge(&self, prefix_horizons: &[Seq]) -> Option<(usize, Seq)> {
        let mut pins = self.pins.lock().expect("pins lock");
        let oldest_pin = pins.counts.keys().next().copied().unwrap_or(u64::MAX);
        let n = prefix_horizons.partition_point(|h| h.0 <= oldest_pin);
        let h = *prefix_horizons.get(n.checked_sub(1)?)?;
        pins.merging_to = pins.merging_to.max(h.0);
        Some((n, h))
    }

    pub(crate) fn oldest_pin(&self) -> Option<Seq> {
        self.pins
            .lock()
            .expect("pins lock")
            .counts
            .keys()
            .next()
            .map(|s| Seq(*s))
    }
}

/// Held by a view for as long as it exists.
pub(crate) struct PinGuard {
    group: Arc<Group>,
    seq: Seq,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = self.group.pins.lock().expect("pins lock");
        if let Some(n) = pins.counts.get_mut(&self.seq.0) {
            *n -= 1;
            if *n == 0 {
                pins.counts.remove(&self.seq.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::group::test_group;

    #[test]
    fn pins_hold_back_the_merge_horizon() {
        let (_dir, g) = test_group();
        let pin = g.pin(Seq(5)).unwrap();
        assert_eq!(
            g.claim_merge(&[Seq(4), Seq(10)]),
            Some((1, Seq(4))),
            "merge stops before the segment holding the oldest pin"
        );
        assert_eq!(g.claim_merge(&[Seq(6)]), None);
        assert!(
            g.pin(Seq(3)).is_err(),
            "a view older than a claimed horizon is refused"
        );
        assert!(g.pin(Seq(5)).is_ok());
        drop(pin);
        assert_eq!(g.oldest_pin(), None);
        assert_eq!(g.claim_merge(&[Seq(10)]), Some((1, Seq(10))));
        assert!(matches!(g.pin(Seq(9)), Err(StoreError::PointTooOld { .. })));
    }
}
