//! Initial sync: copy every disk to the target while the workload keeps writing.
//!
//! Runs when the target has nothing for the group (durable seq 0 at the first WELCOME) or when
//! this state directory has no record of a completed sync (an agent that died mid-sync starts it
//! over). Each disk is read in [`CHUNK`]s; holes (SEEK_DATA) and all-zero 4 KiB blocks are
//! skipped (the target's base reads as zeros). A chunk is read and queued while holding its
//! range lock exclusively, which orders it against captured writes (see [`crate::rangelock`]).
//! The queue's memory bound paces the sync to what the link can take.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rewind_formats::{RecordKind, TagKind};

use crate::capture::Capture;
use crate::error::{Error, Result};
use crate::queue::Record;
use crate::rangelock::CHUNK;
use crate::sender::now_ms;

/// The name of the SyncBegin and SyncEnd tags around an initial sync.
pub const SYNC_TAG: &str = "initial-sync";

/// Zero detection granularity.
const BLOCK: usize = 4096;

/// Progress of one disk's sync, read by the status writer.
#[derive(Default)]
pub struct SyncProgress {
    /// Bytes of the disk scanned so far.
    pub done_bytes: AtomicU64,
    /// Bytes of data queued (not holes or zeros).
    pub sent_bytes: AtomicU64,
}

/// The marker that says a sync of `group` completed and was acknowledged.
pub fn marker(state_dir: &Path, group: &str) -> PathBuf {
    state_dir.join(format!("{group}.synced"))
}

/// Copies every disk into the stream; returns the last local seq it queued (0 if none).
/// The first record is followed by a SyncBegin tag at its seq, and the last by a SyncEnd tag at
/// its seq (neither if no record was sent), so the target knows which points lie inside the
/// sync and are not recoverable.
///
/// `fresh`: the target holds nothing for the group, so zeros and holes need not travel. Otherwise
/// (a sync restarted after the agent died) the target may hold older data anywhere, so zero
/// ranges are sent as zero records (no data). A SyncBegin that a dead sync left open at the
/// target is closed by this sync's SyncEnd: the target closes every open window at a SyncEnd.
pub fn run(capture: &Capture, progress: &[Arc<SyncProgress>], fresh: bool) -> Result<u64> {
    let mut last = 0;
    for (i, d) in capture.disks.iter().enumerate() {
        tracing::info!(disk = %d.name, size = d.size_bytes, "initial sync: starting");
        let p = &progress[i];
        let mut chunk = 0u64;
        while chunk * CHUNK < d.size_bytes {
            let start = chunk * CHUNK;
            let end = (start + CHUNK).min(d.size_bytes);
            // Skip whole chunks of holes without reading them (or taking their lock: a hole
            // that a write fills meanwhile gets that write's own record).
            match d.next_data(start) {
                _ if !fresh => {}
                None => {
                    p.done_bytes.store(d.size_bytes, Ordering::Relaxed);
                    break;
                }
                Some(data) if data >= end => {
                    chunk = data / CHUNK;
                    p.done_bytes.store(chunk * CHUNK, Ordering::Relaxed);
                    continue;
                }
                Some(_) => {}
            }
            let len = (end - start) as usize;
            let _lock = capture.locks.chunk(i as u16, chunk);
            let mut buf = capture.pool.get(len);
            d.read_at(&mut buf, start)?;
            for (off, run_len, nonzero) in runs(&buf) {
                let record = if nonzero {
                    let mut data = capture.pool.get(run_len);
                    data.copy_from_slice(&buf[off..off + run_len]);
                    p.sent_bytes.fetch_add(run_len as u64, Ordering::Relaxed);
                    Record {
                        disk: i as u16,
                        kind: RecordKind::Data,
                        offset: start + off as u64,
                        len: run_len as u32,
                        data: Some(data),
                    }
                } else if fresh {
                    continue;
                } else {
                    Record {
                        disk: i as u16,
                        kind: RecordKind::Zero,
                        offset: start + off as u64,
                        len: run_len as u32,
                        data: None,
                    }
                };
                last = if last == 0 {
                    // The first record: the target's points from here until SyncEnd are not
                    // recoverable (the replica mixes old and new blocks).
                    capture
                        .queue
                        .push_tagged(record, SYNC_TAG, TagKind::SyncBegin, now_ms())?
                } else {
                    capture.queue.push(record)?
                };
            }
            drop(_lock);
            chunk += 1;
            p.done_bytes.store(end, Ordering::Relaxed);
        }
        tracing::info!(disk = %d.name, data_bytes = p.sent_bytes.load(Ordering::Relaxed), "initial sync: disk read");
    }
    if last > 0 {
        capture
            .queue
            .push_tag_at(last, SYNC_TAG, TagKind::SyncEnd, now_ms())?;
    }
    Ok(last)
}

/// `(offset, len, nonzero)` of the runs of blocks that are all zero or not (a tail shorter than
/// a block counts as a block); the runs cover `buf` in order.
fn runs(buf: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    for (i, block) in buf.chunks(BLOCK).enumerate() {
        let nonzero = block.iter().any(|&b| b != 0);
        match runs.last_mut() {
            Some((_, l, nz)) if *nz == nonzero => *l += block.len(),
            _ => runs.push((i * BLOCK, block.len(), nonzero)),
        }
    }
    runs
}

/// Writes the marker (after the sync's records are acknowledged).
pub fn mark_done(state_dir: &Path, group: &str) -> Result<()> {
    let m = marker(state_dir, group);
    std::fs::write(&m, b"initial sync complete\n").map_err(Error::path("writing", &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_are_skipped_and_runs_merged() {
        let mut b = vec![0u8; 5 * BLOCK + 512];
        b[BLOCK] = 1;
        b[2 * BLOCK + 5] = 1;
        b[4 * BLOCK + 9] = 1;
        b[5 * BLOCK + 1] = 1;
        assert_eq!(
            runs(&b),
            vec![
                (0, BLOCK, false),
                (BLOCK, 2 * BLOCK, true),
                (3 * BLOCK, BLOCK, false),
                (4 * BLOCK, BLOCK + 512, true)
            ]
        );
        assert_eq!(runs(&[0u8; 8192]), vec![(0, 8192, false)]);
    }
}
