//! The check of one view against the history (the method of blksnap's `corrupt` test): the
//! newest write the view shows is K; then every block must show the newest write at or before
//! K that covers it, and nothing newer. Only write K itself may be partly there (the agent may
//! record one write as several records, each its own seq).

use std::fmt;

use super::history::History;
use super::sector::{parse, Block, BLOCK};

/// What a view held, or where it went wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The newest write the view shows (0: none).
    pub newest: u64,
    /// Blocks that broke the rule, with what they held and what was expected (at most 8 kept).
    pub bad: Vec<(u64, String)>,
    pub bad_count: u64,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.bad_count == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "newest write {}", self.newest)?;
        if self.bad_count > 0 {
            write!(f, ", {} bad blocks, first: ", self.bad_count)?;
            for (b, why) in &self.bad {
                write!(f, "[block {b}: {why}] ")?;
            }
        }
        Ok(())
    }
}

/// Checks `image` (a whole view of the disk) against `history`. With `exact`, write K must be
/// there whole (a point taken between writes: a tag while the workload paused).
pub fn check(image: &[u8], history: &History, exact: bool) -> Verdict {
    let blocks = (image.len() / BLOCK) as u64;
    let mut seen = Vec::with_capacity(blocks as usize);
    let mut bad = Vec::new();
    let mut bad_count = 0u64;
    let mut flag = |b: u64, why: String, bad: &mut Vec<(u64, String)>| {
        bad_count += 1;
        if bad.len() < 8 {
            bad.push((b, why));
        }
    };
    for (b, chunk) in image.chunks_exact(BLOCK).enumerate() {
        let v = match parse(chunk, (b * BLOCK) as u64) {
            Block::Zero => 0,
            Block::Written(h) if h.seq as usize <= history.writes.len() => h.seq,
            Block::Written(h) => {
                flag(
                    b as u64,
                    format!("write {} never happened", h.seq),
                    &mut bad,
                );
                0
            }
            Block::Garbage => {
                flag(
                    b as u64,
                    "garbage (torn, misplaced or corrupt)".into(),
                    &mut bad,
                );
                0
            }
        };
        seen.push(v);
    }
    let newest = seen.iter().copied().max().unwrap_or(0);
    let want = history.state_after(newest, blocks);
    let before = history.state_after(newest.saturating_sub(1), blocks);
    let last = history.get(newest);
    for (b, (&got, (&w, &w_before))) in seen.iter().zip(want.iter().zip(&before)).enumerate() {
        let b = b as u64;
        let in_last = !exact && last.is_some_and(|l| (l.first..l.first + l.blocks).contains(&b));
        if got == w || (in_last && got == w_before) {
            continue;
        }
        flag(b, format!("holds write {got}, want {w}"), &mut bad);
    }
    Verdict {
        newest,
        bad,
        bad_count,
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::Write;
    use super::super::sector::{fill, Header};
    use super::*;

    fn apply(img: &mut [u8], w: Write) {
        for b in w.first..w.first + w.blocks {
            let at = b as usize * BLOCK;
            let h = Header {
                seq: w.seq,
                offset: at as u64,
                time_us: 1,
            };
            fill(&mut img[at..at + BLOCK], h);
        }
    }

    #[test]
    fn prefixes_pass_and_holes_fail() {
        let mut h = History::default();
        let ws = [(0, 4), (2, 4), (10, 1), (3, 1)];
        for (i, (first, blocks)) in ws.into_iter().enumerate() {
            h.push(Write {
                seq: i as u64 + 1,
                first,
                blocks,
            });
        }
        let mut img = vec![0u8; 16 * BLOCK];
        assert!(check(&img, &h, true).ok());
        for k in 0..4 {
            apply(&mut img, h.writes[k]);
            let v = check(&img, &h, true);
            assert!(v.ok() && v.newest == k as u64 + 1, "{v}");
        }
        // A partial last write passes; a missing older write does not.
        let mut partial = vec![0u8; 16 * BLOCK];
        apply(&mut partial, h.writes[0]);
        apply(
            &mut partial,
            Write {
                seq: 2,
                first: 2,
                blocks: 2,
            },
        );
        assert!(check(&partial, &h, false).ok());
        assert!(!check(&partial, &h, true).ok(), "not whole");
        let mut hole = vec![0u8; 16 * BLOCK];
        apply(&mut hole, h.writes[0]);
        apply(&mut hole, h.writes[2]);
        let v = check(&hole, &h, false);
        assert!(!v.ok() && v.newest == 3, "{v}");
        // A block from a newer write than its neighbours say is caught the same way.
        hole[BLOCK..2 * BLOCK].copy_from_slice(&partial[BLOCK..2 * BLOCK]);
        hole[5] ^= 1;
        assert!(!check(&hole, &h, false).ok());
    }
}
