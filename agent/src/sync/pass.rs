//! Sync and resync: bring the target's copy of the pinned regions (see [`crate::sync::dirty`]) level
//! with the disks while the workload keeps writing.
//!
//! - A *fresh* pass (the target holds nothing for the group: the initial sync) sends every
//!   region's data; holes (SEEK_DATA) and all-zero 4 KiB blocks are skipped, as the target's
//!   base reads as zeros.
//! - A region pinned only to be *resent* (a relay acknowledged its records and never forwarded
//!   them, while the target kept all it held: see [`crate::stream::loss`]) is sent whole, zero
//!   blocks as zero records, without asking the target: the target lacks records of it, and
//!   a compare of every region would cost more than sending the few that are dirty.
//! - A *compare* pass (after an agent crash, a host reboot, bitmap mode, or a state dir the
//!   target does not know) asks the target for its block hashes of each region (HASHES) and
//!   sends only the blocks that differ. The same component serves reverse replication.
//!
//! A region is read, compared and queued while holding its range lock exclusively, which
//! orders the copy against captured writes (see [`crate::sync::rangelock`]): the copy gets a seq later
//! than every write it contains and earlier than every write it does not.
//!
//! Why the target's hashes may be from any moment: the answer reflects the target's state at
//! some seq `p` no later than the last seq `q` recorded when the region is read. Every record
//! in `(p, q]` is still queued and will be applied after that state. If the target's block
//! equals the local block, applying those records (each sets bytes to what the local block now
//! holds, or leaves bytes that were already equal) ends with the local block; if it differs,
//! the copy queued after `q` overwrites it. Either way the target ends equal.

use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use rewind_formats::hash::block_hash;
use rewind_formats::RecordKind;

use crate::capture::Capture;
use crate::error::{Error, Result};
use crate::stream::queue::Record;
use crate::sync::dirty::{DirtyMap, Pinned, REGION};
use crate::sync::hashclient::{HashRequest, HashRequests};
use crate::sync::progress::SyncProgress;

/// The name of the SyncBegin and SyncEnd tags around an initial sync.
pub const SYNC_TAG: &str = "initial-sync";
/// The name of the SyncBegin and SyncEnd tags around a partial resync.
pub const RESYNC_TAG: &str = "resync";

/// Compare granularity: the target's hashes are of 4 KiB blocks.
const BLOCK: usize = 4096;
/// HASHES requests in flight ahead of the region being compared.
const PIPELINE: usize = 16;
/// How often a wait for an answer checks for stop and bitmap mode.
const POLL: Duration = Duration::from_millis(100);

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every region was compared and queued.
    Done,
    /// Bitmap mode began: the regions not done stay pinned for the next pass.
    Overflow,
}

/// What a pass works with.
pub struct Pass<'a> {
    pub capture: &'a Capture,
    pub dirty: &'a DirtyMap,
    pub hashes: &'a HashRequests,
    pub progress: &'a [SyncProgress],
    pub stop: &'a AtomicBool,
    /// When and how fast the policy lets syncs run.
    pub window: &'a crate::sync::window::SyncWindow,
}

impl Pass<'_> {
    fn region_len(&self, p: &Pinned) -> u64 {
        let size = self.capture.disks[p.disk as usize].size_bytes;
        (size - p.region * REGION).min(REGION)
    }

    /// Block size of a region's compare: 4 KiB, or a sector where the disk's end is not
    /// 4 KiB-aligned.
    fn block_size(&self, p: &Pinned) -> u32 {
        if self.region_len(p).is_multiple_of(BLOCK as u64) {
            BLOCK as u32
        } else {
            rewind_formats::SECTOR as u32
        }
    }

    fn request(&self, p: &Pinned) {
        let bs = self.block_size(p);
        self.hashes.request(HashRequest {
            disk: p.disk,
            offset: p.region * REGION,
            block_size: bs,
            blocks: (self.region_len(p) / u64::from(bs)) as u32,
        });
    }

    /// Brings `regions` level with the disks: `fresh` sends data without asking the target, as
    /// does a region pinned to be resent.
    pub fn run(&self, regions: &[Pinned], fresh: bool) -> Result<Outcome> {
        for p in self.progress {
            p.done_bytes.store(0, Ordering::Relaxed);
            p.total_bytes.store(0, Ordering::Relaxed);
        }
        for r in regions {
            self.progress[r.disk as usize]
                .total_bytes
                .fetch_add(self.region_len(r), Ordering::Relaxed);
        }
        // Answers to an earlier pass (cut short by bitmap mode, say) are not for this one.
        self.hashes.new_pass();
        let mut asked = 0;
        for (i, r) in regions.iter().enumerate() {
            if self.stop.load(Ordering::SeqCst) {
                return Err(Error::Stopping);
            }
            self.window.admit(self.region_len(r), self.stop)?;
            let theirs = if fresh {
                Against::Zeros
            } else if r.resend {
                Against::Nothing
            } else {
                while asked < regions.len() && asked < i + PIPELINE {
                    if !regions[asked].resend {
                        self.request(&regions[asked]);
                    }
                    asked += 1;
                }
                self.capture.queue.poke();
                match self.wait_answer(r)? {
                    Some(h) => Against::Hashes(h),
                    None => return Ok(Outcome::Overflow),
                }
            };
            if !self.region(r, &theirs)? {
                return Ok(Outcome::Overflow);
            }
            let counter = match theirs {
                Against::Zeros => None,
                Against::Nothing => Some(&self.progress[r.disk as usize].resent_regions),
                Against::Hashes(_) => Some(&self.progress[r.disk as usize].compared_regions),
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
            self.progress[r.disk as usize]
                .done_bytes
                .fetch_add(self.region_len(r), Ordering::Relaxed);
        }
        Ok(Outcome::Done)
    }

    /// An adopted target (its base a copy of other disks) holds no record yet. Sending the
    /// first block of the first disk again gives it a first record, so a compare that finds
    /// nothing different still leaves it a point (and the end of "adopted": otherwise every
    /// reconnect would compare everything again, and a drain would have nothing to tag).
    pub fn resend_first_block(&self) -> Result<()> {
        let q = &self.capture.queue;
        let d = &self.capture.disks[0];
        let len = d.size_bytes.min(BLOCK as u64);
        if !q.wait_for_space(len)? {
            return Ok(());
        }
        let _lock = self.capture.locks.chunk(0, 0);
        let mut buf = self.capture.pool.get(len as usize);
        d.read_at(&mut buf, 0)?;
        q.push_copy(Record::new(0, RecordKind::Data, 0, len as u32, Some(buf)))?;
        Ok(())
    }

    /// The target's hashes of `r`; `None` if bitmap mode began meanwhile (the link is so slow
    /// that answers would come after everything queued before them).
    fn wait_answer(&self, r: &Pinned) -> Result<Option<Vec<u64>>> {
        loop {
            match self.hashes.wait(r.disk, r.region * REGION, POLL) {
                Some(Ok(h)) => return Ok(Some(h)),
                Some(Err(why)) => return Err(Error::Protocol(why)),
                None => {}
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(Error::Stopping);
            }
            if self.capture.queue.overflowing() {
                return Ok(None);
            }
        }
    }

    /// Compares and queues one region; false when bitmap mode turned the copy away.
    fn region(&self, p: &Pinned, theirs: &Against) -> Result<bool> {
        let disk = p.disk as usize;
        let d = &self.capture.disks[disk];
        let start = p.region * REGION;
        let len = self.region_len(p);
        let q = &self.capture.queue;
        // A fresh pass skips holes without reading them (or taking the lock: a hole that a
        // write fills meanwhile gets that write's own record, with a later seq).
        if matches!(theirs, Against::Zeros)
            && d.next_data(start).is_none_or(|data| data >= start + len)
        {
            self.dirty.unpin(*p, q.last_seq());
            return Ok(true);
        }
        // Memory first, outside the lock: captured writes to this region must never wait for
        // the link behind the sync.
        if !q.wait_for_space(len)? {
            return Ok(false);
        }
        let _lock = self.capture.locks.chunk(p.disk, p.region);
        let mut buf = self.capture.pool.get(len as usize);
        d.read_at(&mut buf, start)?;
        let bs = self.block_size(p) as usize;
        let mut last = None;
        for (off, run_len, kind) in runs(&buf, bs, theirs) {
            let data = (kind == RecordKind::Data).then(|| {
                let mut b = self.capture.pool.get(run_len);
                b.copy_from_slice(&buf[off..off + run_len]);
                b
            });
            let record = Record::new(p.disk, kind, start + off as u64, run_len as u32, data);
            match q.push_copy(record)? {
                Some(seq) => last = Some(seq),
                None => return Ok(false),
            }
            if kind == RecordKind::Data {
                self.progress[disk]
                    .sent_bytes
                    .fetch_add(run_len as u64, Ordering::Relaxed);
            }
        }
        // Nothing differed: clean once everything recorded so far is acknowledged.
        self.dirty.unpin(*p, last.unwrap_or_else(|| q.last_seq()));
        Ok(true)
    }
}

/// What a region is sent against: what the target is known to hold of it.
enum Against {
    /// A fresh target: it reads as zeros.
    Zeros,
    /// The target's hashes of its blocks.
    Hashes(Vec<u64>),
    /// Unknown, and not asked: everything is sent.
    Nothing,
}

/// The runs of `buf` to send, as `(offset, len, kind)`: against the target's hashes of its
/// `bs`-byte blocks, the blocks that differ, zero records for all-zero ones; against a fresh
/// target (zeros), the blocks that are not all zero; against nothing, every block. Adjacent
/// blocks of the same kind are merged.
fn runs(buf: &[u8], bs: usize, theirs: &Against) -> Vec<(usize, usize, RecordKind)> {
    let mut out: Vec<(usize, usize, RecordKind)> = Vec::new();
    for (i, block) in buf.chunks(bs).enumerate() {
        let zero = block.iter().all(|&b| b == 0);
        let send = match theirs {
            Against::Hashes(h) => h.get(i) != Some(&block_hash(block)),
            Against::Zeros => !zero,
            Against::Nothing => true,
        };
        if !send {
            continue;
        }
        let kind = if zero {
            RecordKind::Zero
        } else {
            RecordKind::Data
        };
        match out.last_mut() {
            Some((o, l, k)) if *k == kind && *o + *l == i * bs => *l += block.len(),
            _ => out.push((i * bs, block.len(), kind)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_runs_skip_zero_blocks_and_merge() {
        let mut b = vec![0u8; 5 * BLOCK + 512];
        b[BLOCK] = 1;
        b[2 * BLOCK + 5] = 1;
        b[4 * BLOCK + 9] = 1;
        b[5 * BLOCK + 1] = 1;
        assert_eq!(
            runs(&b, BLOCK, &Against::Zeros),
            vec![
                (BLOCK, 2 * BLOCK, RecordKind::Data),
                (4 * BLOCK, BLOCK + 512, RecordKind::Data)
            ]
        );
        assert!(runs(&[0u8; 8192], BLOCK, &Against::Zeros).is_empty());
    }

    #[test]
    fn compare_runs_send_what_differs() {
        let mut ours = vec![0u8; 4 * BLOCK];
        ours[..BLOCK].fill(1);
        ours[2 * BLOCK..3 * BLOCK].fill(2);
        let mut target = ours.clone();
        target[BLOCK] = 9; // block 1: theirs has data, ours is zero
        target[2 * BLOCK] = 9; // block 2 differs
        let theirs: Vec<u64> = target.chunks(BLOCK).map(block_hash).collect();
        assert_eq!(
            runs(&ours, BLOCK, &Against::Hashes(theirs)),
            vec![
                (BLOCK, BLOCK, RecordKind::Zero),
                (2 * BLOCK, BLOCK, RecordKind::Data)
            ]
        );
        let same: Vec<u64> = ours.chunks(BLOCK).map(block_hash).collect();
        assert!(runs(&ours, BLOCK, &Against::Hashes(same)).is_empty());
    }

    #[test]
    fn resent_runs_cover_every_block_zeros_as_zero_records() {
        let mut b = vec![0u8; 4 * BLOCK];
        b[BLOCK..2 * BLOCK].fill(7);
        b[3 * BLOCK] = 1;
        assert_eq!(
            runs(&b, BLOCK, &Against::Nothing),
            vec![
                (0, BLOCK, RecordKind::Zero),
                (BLOCK, BLOCK, RecordKind::Data),
                (2 * BLOCK, BLOCK, RecordKind::Zero),
                (3 * BLOCK, BLOCK, RecordKind::Data)
            ]
        );
    }
}
