//! Which zstd level a batch is compressed at: the configured one, unless the data has stopped
//! compressing.
//!
//! Compressing data that does not shrink (encrypted or already compressed files, random test
//! data) costs the sender about half a core at level 1 and gains nothing on the wire. So when a
//! batch comes out at [`INCOMPRESSIBLE`] of its size or more, the next batches use zstd's
//! fastest setting (which stores such data nearly as is, at memcpy-like speed); every
//! [`RETRY_EVERY`] batches one goes at the configured level again, to notice when the data
//! compresses again. Every batch is still a zstd frame: the target sees no difference.

use std::sync::atomic::{AtomicU32, Ordering};

/// Compressed/raw ratio at or above which a batch counts as incompressible.
pub const INCOMPRESSIBLE: f64 = 0.95;
/// While the data is incompressible, one batch in this many tries the configured level.
pub const RETRY_EVERY: u32 = 16;
/// zstd's negative levels trade ratio for speed; this far down it hardly looks for matches.
pub const PASS_THROUGH_LEVEL: i32 = -1000;

/// Shared by the sender's compression threads.
pub struct Levels {
    configured: i32,
    /// 0: compressing normally; n > 0: incompressible, and n batches since the last retry.
    skipping: AtomicU32,
}

impl Levels {
    pub fn new(configured: i32) -> Levels {
        Levels {
            configured,
            skipping: AtomicU32::new(0),
        }
    }

    /// The level for the next batch.
    pub fn next(&self) -> i32 {
        let n = self.skipping.load(Ordering::Relaxed);
        if n == 0 || n.is_multiple_of(RETRY_EVERY) {
            self.configured
        } else {
            self.skipping.fetch_add(1, Ordering::Relaxed);
            PASS_THROUGH_LEVEL
        }
    }

    /// How a batch compressed at `level` came out.
    pub fn observe(&self, level: i32, raw: usize, compressed: usize) {
        if level != self.configured {
            return;
        }
        if raw > 0 && compressed as f64 >= raw as f64 * INCOMPRESSIBLE {
            // Start (or continue after a retry) skipping.
            self.skipping.store(1, Ordering::Relaxed);
        } else {
            self.skipping.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_data_skips_and_retries() {
        let l = Levels::new(1);
        assert_eq!(l.next(), 1);
        l.observe(1, 1000, 400);
        assert_eq!(l.next(), 1, "compressible: stays");
        l.observe(1, 1000, 990);
        let levels: Vec<i32> = (0..RETRY_EVERY).map(|_| l.next()).collect();
        assert!(levels[..(RETRY_EVERY - 1) as usize]
            .iter()
            .all(|&x| x == PASS_THROUGH_LEVEL));
        assert_eq!(levels[(RETRY_EVERY - 1) as usize], 1, "a retry");
        l.observe(1, 1000, 300);
        assert_eq!(l.next(), 1, "compresses again: back to normal");
        l.observe(PASS_THROUGH_LEVEL, 1000, 1000); // ignored
        assert_eq!(l.next(), 1);
    }
}
