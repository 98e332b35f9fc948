//! Range locks that order the initial sync's copies against captured writes.
//!
//! The sync reads a chunk and queues it while holding that chunk's lock exclusively; a captured
//! write holds the locks of the chunks it touches shared, from its pwrite until its seq is
//! assigned. So for any bytes, either the write is on disk before the sync reads them (the copy
//! holds the new bytes and gets the later seq), or the write comes after the copy and gets the
//! later seq itself: the replica never ends with the sync's stale copy on top.
//!
//! Writes do not exclude each other (they share the lock), so capture stays parallel. Locks are
//! striped: a fixed array of RwLocks indexed by (disk, chunk); unrelated chunks that share a
//! stripe only wait on each other while a sync holds one. Several stripes are always taken in
//! ascending order, so two lockers never deadlock.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Bytes per lock chunk; also the initial sync's read size.
pub const CHUNK: u64 = 1 << 20;
const STRIPES: usize = 4096;

pub struct RangeLocks {
    stripes: Vec<RwLock<()>>,
}

/// Shared locks on the stripes of one range.
pub struct ReadGuards<'a> {
    _guards: Vec<RwLockReadGuard<'a, ()>>,
}

impl Default for RangeLocks {
    fn default() -> Self {
        RangeLocks::new()
    }
}

impl RangeLocks {
    pub fn new() -> RangeLocks {
        RangeLocks {
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }

    fn stripe(disk: u16, chunk: u64) -> usize {
        // Spread disks over the stripes so that chunk k of every disk does not collide.
        ((chunk.wrapping_add(u64::from(disk).wrapping_mul(7919))) % STRIPES as u64) as usize
    }

    /// The stripes covering `[offset, offset + len)`, ascending and without repeats.
    fn stripes_of(disk: u16, offset: u64, len: u64) -> Vec<usize> {
        if len == 0 {
            return Vec::new();
        }
        let first = offset / CHUNK;
        let last = (offset + len - 1) / CHUNK;
        if last - first + 1 >= STRIPES as u64 {
            return (0..STRIPES).collect();
        }
        let mut v: Vec<usize> = (first..=last).map(|c| Self::stripe(disk, c)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Shared locks for a captured write (or zeroing) of `[offset, offset + len)`.
    pub fn read(&self, disk: u16, offset: u64, len: u64) -> ReadGuards<'_> {
        ReadGuards {
            _guards: Self::stripes_of(disk, offset, len)
                .into_iter()
                .map(|i| self.stripes[i].read().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        }
    }

    /// The exclusive lock of one sync chunk (chunk index `chunk` of `disk`).
    pub fn chunk(&self, disk: u16, chunk: u64) -> RwLockWriteGuard<'_, ()> {
        self.stripes[Self::stripe(disk, chunk)]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_cover_ranges_in_order() {
        assert_eq!(RangeLocks::stripes_of(0, 0, 4096), vec![0]);
        assert_eq!(RangeLocks::stripes_of(0, CHUNK - 512, 1024), vec![0, 1]);
        assert!(RangeLocks::stripes_of(0, 0, 0).is_empty());
        assert_eq!(RangeLocks::stripes_of(0, 0, u64::MAX / 2).len(), STRIPES);
        let wrap = RangeLocks::stripes_of(
            1,
            (STRIPES as u64 - 7919 % STRIPES as u64 - 1) * CHUNK,
            2 * CHUNK,
        );
        assert!(wrap.windows(2).all(|w| w[0] < w[1]), "{wrap:?}");
    }

    #[test]
    fn a_sync_chunk_excludes_writes_to_it_only() {
        let l = RangeLocks::new();
        let _w = l.chunk(0, 3);
        // Another chunk's write proceeds.
        let _r = l.read(0, 5 * CHUNK, 4096);
        assert!(l.stripes[RangeLocks::stripe(0, 3)].try_read().is_err());
    }
}
