//! Write capture: every write to a protected disk goes to its backing disk and into the ordered
//! stream before it is acknowledged to the workload.
//!
//! The workload's block device is a loop device ([`loopdev`]) over a FUSE file per disk
//! ([`fuse`]); the FUSE handlers call [`Capture`], which does the IO on the [`backing::Backing`]
//! disk and records it in the [`Queue`].

pub mod backing;
pub mod fuse;
pub mod loopdev;

use std::sync::Arc;

use rewind_formats::{RecordKind, MAX_RECORD_LEN, SECTOR};

use crate::aligned::{AlignedBuf, Pool};
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::queue::{Queue, Record};
use crate::rangelock::RangeLocks;
use backing::Backing;

/// The capture path of one group, shared by fuser's threads.
pub struct Capture {
    pub disks: Vec<Backing>,
    pub queue: Arc<Queue>,
    pub locks: Arc<RangeLocks>,
    pub inflight: InFlight,
    pub pool: Arc<Pool>,
}

impl Capture {
    fn check(&self, disk: usize, offset: u64, len: u64) -> Result<&Backing> {
        let d = &self.disks[disk];
        if !offset.is_multiple_of(SECTOR) || !len.is_multiple_of(SECTOR) {
            return Err(Error::DiskIo {
                disk: d.name.clone(),
                op: "write (not sector-aligned)",
                offset,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        if offset.checked_add(len).is_none_or(|end| end > d.size_bytes) {
            return Err(Error::DiskIo {
                disk: d.name.clone(),
                op: "write past the end",
                offset,
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        Ok(d)
    }

    /// Writes `data` at `offset` of disk `disk` and records it. Returns once both are done.
    pub fn write(&self, disk: usize, offset: u64, data: &[u8]) -> Result<()> {
        let d = self.check(disk, offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        // FUSE caps writes at 1 MiB (max_write), far below a record's limit; split anyway so a
        // bigger request could never build a record the target refuses.
        for (i, piece) in data.chunks(MAX_RECORD_LEN as usize).enumerate() {
            let off = offset + (i * MAX_RECORD_LEN as usize) as u64;
            let mut buf = self.pool.get(piece.len());
            buf.copy_from_slice(piece);
            // The in-flight claim first, then the sync's range locks (see rangelock: a sync
            // waits for no claim, so this order cannot deadlock).
            let _claim = self.inflight.claim(disk as u16, off, piece.len() as u64);
            let _locks = self.locks.read(disk as u16, off, piece.len() as u64);
            d.write_at(&buf, off)?;
            self.queue.push(Record {
                disk: disk as u16,
                kind: RecordKind::Data,
                offset: off,
                len: piece.len() as u32,
                data: Some(buf),
            })?;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` (cut at the end of the disk) into a pooled buffer.
    pub fn read(&self, disk: usize, offset: u64, len: u32) -> Result<AlignedBuf> {
        let d = &self.disks[disk];
        let len = u64::from(len).min(d.size_bytes.saturating_sub(offset)) as usize;
        let mut buf = self.pool.get(len);
        if len > 0 {
            d.read_at(&mut buf, offset)?;
        }
        Ok(buf)
    }

    /// Discards or zeroes `[offset, offset + len)` and records it as zero records.
    pub fn zero(&self, disk: usize, offset: u64, len: u64, punch: bool) -> Result<()> {
        let d = self.check(disk, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let _claim = self.inflight.claim(disk as u16, offset, len);
        let _locks = self.locks.read(disk as u16, offset, len);
        d.zero(offset, len, punch)?;
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(u64::from(MAX_RECORD_LEN));
            self.queue.push(Record {
                disk: disk as u16,
                kind: RecordKind::Zero,
                offset: at,
                len: n as u32,
                data: None,
            })?;
            at += n;
        }
        Ok(())
    }

    /// Flush: the backing disk makes everything written so far durable.
    pub fn flush(&self, disk: usize) -> Result<()> {
        self.disks[disk].sync()
    }
}
