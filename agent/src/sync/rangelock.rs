//! Range locks that order the initial sync's copies against captured writes.
//!
//! The sync reads a chunk and queues it while holding that chunk's lock exclusively; a captured
//! write holds the locks of the chunks it touches shared, from its pwrite until its seq is
//! assigned. So for any bytes, either the write is on disk before the sync reads them (the copy
//! holds the new bytes and gets the later seq), or the write comes after the copy and gets the
//! later seq itself: the replica never ends with the sync's stale copy on top.
//!
//! Writes do not exclude each other (they share the lock), so capture stays parallel. Locks are
//! striped: a fixed array of reader counts and writer flags indexed by (disk, chunk); unrelated
//! chunks that share a stripe only wait on each other while a sync holds one. A write takes all
//! its stripes at once, so two lockers never deadlock.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes per lock chunk; also the initial sync's read size.
pub const CHUNK: u64 = 1 << 20;
const STRIPES: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Stripe {
    /// Writes holding this stripe shared.
    readers: u32,
    /// The sync holds it, or waits for its readers to leave (new readers wait meanwhile).
    writer: bool,
}

/// The stripes' states under one mutex: a write takes all its stripes at once (no partial
/// holds, so no lock order to get wrong), and a guard can be released on another thread (an
/// asynchronous write's completion).
pub struct RangeLocks {
    stripes: Mutex<Vec<Stripe>>,
    changed: Condvar,
}

/// Shared locks on the stripes of one range; released when dropped, on any thread.
pub struct ReadGuards {
    locks: Arc<RangeLocks>,
    stripes: Vec<usize>,
}

/// The exclusive lock of one sync chunk.
pub struct ChunkGuard<'a> {
    locks: &'a RangeLocks,
    stripe: usize,
}

impl Default for RangeLocks {
    fn default() -> Self {
        RangeLocks::new()
    }
}

impl RangeLocks {
    pub fn new() -> RangeLocks {
        RangeLocks {
            stripes: Mutex::new(vec![Stripe::default(); STRIPES]),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Stripe>> {
        self.stripes.lock().unwrap_or_else(|e| e.into_inner())
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
    pub fn read(self: &Arc<Self>, disk: u16, offset: u64, len: u64) -> ReadGuards {
        let stripes = Self::stripes_of(disk, offset, len);
        if !stripes.is_empty() {
            let mut st = self.lock();
            while stripes.iter().any(|&i| st[i].writer) {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            for &i in &stripes {
                st[i].readers += 1;
            }
        }
        ReadGuards {
            locks: Arc::clone(self),
            stripes,
        }
    }

    /// [`RangeLocks::read`] without waiting: `None` while a sync holds one of the stripes.
    pub fn try_read(self: &Arc<Self>, disk: u16, offset: u64, len: u64) -> Option<ReadGuards> {
        let stripes = Self::stripes_of(disk, offset, len);
        if !stripes.is_empty() {
            let mut st = self.lock();
            if stripes.iter().any(|&i| st[i].writer) {
                return None;
            }
            for &i in &stripes {
                st[i].readers += 1;
            }
        }
        Some(ReadGuards {
            locks: Arc::clone(self),
            stripes,
        })
    }

    /// The exclusive lock of one sync chunk (chunk index `chunk` of `disk`): new writes to its
    /// stripe wait from now on, and this waits for the ones holding it to finish.
    pub fn chunk(&self, disk: u16, chunk: u64) -> ChunkGuard<'_> {
        let i = Self::stripe(disk, chunk);
        let mut st = self.lock();
        while st[i].writer {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st[i].writer = true;
        while st[i].readers > 0 {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        ChunkGuard {
            locks: self,
            stripe: i,
        }
    }
}

impl Drop for ReadGuards {
    fn drop(&mut self) {
        if self.stripes.is_empty() {
            return;
        }
        let mut st = self.locks.lock();
        let mut wake = false;
        for &i in &self.stripes {
            st[i].readers -= 1;
            wake |= st[i].writer && st[i].readers == 0;
        }
        drop(st);
        if wake {
            self.locks.changed.notify_all();
        }
    }
}

impl Drop for ChunkGuard<'_> {
    fn drop(&mut self) {
        self.locks.lock()[self.stripe].writer = false;
        self.locks.changed.notify_all();
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
        let l = Arc::new(RangeLocks::new());
        let w = l.chunk(0, 3);
        // Another chunk's write proceeds.
        let _r = l.read(0, 5 * CHUNK, 4096);
        let l2 = Arc::clone(&l);
        let t = std::thread::spawn(move || drop(l2.read(0, 3 * CHUNK + 4096, 4096)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!t.is_finished(), "a write to the sync's chunk waits");
        drop(w);
        t.join().unwrap();
        // A chunk lock waits for the writes holding its stripe, released on another thread.
        let r = l.read(0, 3 * CHUNK, 4096);
        let l2 = Arc::clone(&l);
        let t = std::thread::spawn(move || drop(l2.chunk(0, 3)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!t.is_finished(), "the sync waits for the write");
        std::thread::spawn(move || drop(r)).join().unwrap();
        t.join().unwrap();
    }
}
