//! Write capture: every write to a protected disk goes to its backing disk and into the ordered
//! stream before it is acknowledged to the workload.
//!
//! The workload's block device is a loop device ([`loopdev`]) over a FUSE file per disk
//! ([`fuse`]); the FUSE handlers call [`Capture`], which does the IO on the [`backing::Backing`]
//! disk and records it in the [`Queue`].
//!
//! Writes go through one of two engines. With [`uring::UringWriter`] (the default) the handler
//! submits the write and returns; the completion records it, releases its claims and replies.
//! The synchronous engine does a pwrite on the handler's thread. Either way a write's seq is
//! assigned once its data is on the backing disk, while it still holds its in-flight claim, so a
//! later overlapping write (which waits for that claim) gets a later seq and reaches the disk
//! later; and the reply comes only after both.

pub mod backing;
pub mod end_watch;
pub mod fuse;
pub mod loopdev;
pub mod ring;
pub mod uring;

use std::io;
use std::sync::Arc;

use rewind_formats::{RecordKind, MAX_RECORD_LEN, SECTOR};

use crate::drain::gate::GatePass;
use crate::drain::WriteGate;
use crate::error::{Error, Result};
use crate::stream::inflight::{Claim, InFlight};
use crate::stream::queue::{Queue, Record};
use crate::stream::seq::LocalSeq;
use crate::sync::dirty::{DirtyMap, Marked};
use crate::sync::rangelock::{RangeLocks, ReadGuards};
use backing::Backing;
use rewind_linux::aligned::{AlignedBuf, Pool};
use uring::UringWriter;

/// Called once an asynchronous write is finished: the bytes written, or why it failed.
pub type WriteDone = Box<dyn FnOnce(Result<u32>) + Send>;

/// A write admitted to its backing disk without waiting ([`Capture::try_admit`]): it holds its
/// gate pass, in-flight claim, the sync's range locks and its durable dirty mark until
/// [`Capture::record`] has queued it.
pub struct Admitted {
    disk: usize,
    offset: u64,
    len: usize,
    d: Arc<Backing>,
    mark: Marked,
    locks: ReadGuards,
    claim: Claim,
    pass: GatePass,
}

impl Admitted {
    /// The write's length in bytes.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// The backing disk's O_DIRECT descriptor, for the write itself.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.d.direct_fd()
    }
}

/// An admitted write's bytes, for [`Capture::record`]: already copied into a buffer of its
/// own, or still in the caller's buffer, to be copied only if the record is kept (not in
/// bitmap mode).
pub enum WriteBytes<'a> {
    Copied(AlignedBuf),
    InPlace(&'a [u8]),
}

impl WriteBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            WriteBytes::Copied(b) => b,
            WriteBytes::InPlace(s) => s,
        }
    }
}

/// What [`Capture::try_admit`] decided.
pub enum Admission {
    /// Go ahead: write the bytes, then [`Capture::record`].
    Ready(Admitted),
    /// Admitting now would wait (an overlapping write in flight, or the sync holds the range):
    /// do the write with [`Capture::write`] on a thread that may block.
    Busy,
}

/// The capture path of one group, shared by fuser's threads.
pub struct Capture {
    pub disks: Vec<Arc<Backing>>,
    pub queue: Arc<Queue>,
    pub locks: Arc<RangeLocks>,
    pub inflight: Arc<InFlight>,
    pub pool: Arc<Pool>,
    /// Regions that may differ from the target: marked before each write reaches the disk.
    pub dirty: Arc<DirtyMap>,
    /// The io_uring engine; `None`: synchronous pwrites on the FUSE threads.
    pub uring: Option<UringWriter>,
    /// Closed by a drain or a fence: new writes are refused (EROFS), and a drain waits for the
    /// ones admitted before to be recorded.
    pub gate: Arc<WriteGate>,
}

impl Capture {
    fn check(&self, disk: usize, offset: u64, len: u64) -> Result<&Backing> {
        let d: &Backing = &self.disks[disk];
        if !offset.is_multiple_of(SECTOR) || !len.is_multiple_of(SECTOR) {
            return Err(Error::DiskIo {
                disk: d.name.clone(),
                op: "write (not sector-aligned)",
                offset,
                source: io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        if offset.checked_add(len).is_none_or(|end| end > d.size_bytes) {
            return Err(Error::DiskIo {
                disk: d.name.clone(),
                op: "write past the end",
                offset,
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        Ok(d)
    }

    /// Writes `data` at `offset` of disk `disk` and records it. Returns once both are done.
    pub fn write(&self, disk: usize, offset: u64, data: &[u8]) -> Result<()> {
        let _pass = self.gate.enter()?;
        self.write_admitted(disk, offset, data)
    }

    /// [`Capture::write`] for a write the gate has admitted.
    fn write_admitted(&self, disk: usize, offset: u64, data: &[u8]) -> Result<()> {
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
            let mark = self.dirty.mark(disk, off, piece.len() as u64)?;
            d.write_at(&buf, off)?;
            let len = piece.len() as u32;
            let record = Record::new(disk as u16, RecordKind::Data, off, len, Some(buf));
            mark.recorded(self.queue.push(record)?.seq());
        }
        Ok(())
    }

    /// Writes `data` at `offset` of disk `disk` and records it, then calls `done` (on another
    /// thread, or on this one with the synchronous engine or an early error). The data is copied
    /// before this returns.
    pub fn write_async(&self, disk: usize, offset: u64, data: &[u8], done: WriteDone) {
        let len = data.len();
        // Admitted writes finish (and are recorded) even once the gate closes: the pass travels
        // with the write and is dropped after its record is queued.
        let pass = match self.gate.enter() {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let uring = match &self.uring {
            Some(u) if len > 0 && len <= MAX_RECORD_LEN as usize => u,
            _ => {
                let r = self.write_admitted(disk, offset, data).map(|()| len as u32);
                drop(pass);
                return done(r);
            }
        };
        let d = match self.check(disk, offset, len as u64) {
            Ok(_) => Arc::clone(&self.disks[disk]),
            Err(e) => return done(Err(e)),
        };
        let mut buf = self.pool.get(len);
        buf.copy_from_slice(data);
        // As in `write`: the in-flight claim first, then the sync's range locks. Both travel
        // with the write and are released on completion, after the seq is assigned.
        let claim = self.inflight.claim(disk as u16, offset, len as u64);
        let locks = self.locks.read(disk as u16, offset, len as u64);
        let mark = match self.dirty.mark(disk, offset, len as u64) {
            Ok(m) => m,
            Err(e) => return done(Err(e)),
        };
        let queue = Arc::clone(&self.queue);
        let fd = d.direct_fd();
        let finish = move |buf: AlignedBuf, r: io::Result<usize>| {
            let r = complete(&d, &buf, offset, r).and_then(|()| {
                let record =
                    Record::new(disk as u16, RecordKind::Data, offset, len as u32, Some(buf));
                let pushed = queue.push(record)?;
                mark.recorded(pushed.seq());
                Ok(())
            });
            drop(locks);
            drop(claim);
            drop(pass);
            done(r.map(|_| len as u32));
        };
        uring.write(fd, offset, buf, Box::new(finish));
    }

    /// Admits a write of `len` bytes at `offset` of disk `disk` for a caller that must not
    /// block (a FUSE ring thread that also completes the writes others wait for). Fails like
    /// [`Capture::write`] (gate closed, bad range, dirty map); `len` is at most a record.
    pub fn try_admit(&self, disk: usize, offset: u64, len: usize) -> Result<Admission> {
        let pass = self.gate.enter()?;
        self.check(disk, offset, len as u64)?;
        if len == 0 || len > MAX_RECORD_LEN as usize {
            return Ok(Admission::Busy);
        }
        // Same order as `write`: the claim, then the range locks; either busy: let go of both.
        let Some(claim) = self.inflight.try_claim(disk as u16, offset, len as u64) else {
            return Ok(Admission::Busy);
        };
        let Some(locks) = self.locks.try_read(disk as u16, offset, len as u64) else {
            return Ok(Admission::Busy);
        };
        let mark = self.dirty.mark(disk, offset, len as u64)?;
        Ok(Admission::Ready(Admitted {
            disk,
            offset,
            len,
            d: Arc::clone(&self.disks[disk]),
            mark,
            locks,
            claim,
            pass,
        }))
    }

    /// Finishes an admitted write once its IO returned `r`: checks it (a short or refused
    /// write is redone synchronously from `bytes`, which hold the same bytes), records the
    /// bytes and lets go of the claims. Returns the bytes written.
    pub fn record(&self, a: Admitted, bytes: WriteBytes<'_>, r: io::Result<usize>) -> Result<u32> {
        let Admitted {
            disk,
            offset,
            len,
            d,
            mark,
            locks,
            claim,
            pass,
        } = a;
        let r = complete(&d, bytes.as_slice(), offset, r).and_then(|()| {
            let buf = match bytes {
                WriteBytes::Copied(buf) => buf,
                WriteBytes::InPlace(data) => {
                    // In bitmap mode the record would be dropped: no copy. The region stays
                    // dirty (pinned), as for any dropped write.
                    if self.queue.drop_if_overflowing(disk as u16, len as u32) {
                        mark.recorded(None);
                        return Ok(len as u32);
                    }
                    let mut buf = self.pool.get(data.len());
                    buf.copy_from_slice(data);
                    buf
                }
            };
            let record = Record::new(disk as u16, RecordKind::Data, offset, len as u32, Some(buf));
            mark.recorded(self.queue.push(record)?.seq());
            Ok(len as u32)
        });
        // The seq is assigned: overlapping writes may go now.
        drop(locks);
        drop(claim);
        drop(pass);
        r
    }

    /// Whether the stream is in bitmap mode now, where a write's record is dropped: a hint
    /// to defer copying its bytes ([`WriteBytes::InPlace`]).
    pub fn dropping_records(&self) -> bool {
        self.queue.overflowing()
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
        let _pass = self.gate.enter()?;
        let d = self.check(disk, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let _claim = self.inflight.claim(disk as u16, offset, len);
        let _locks = self.locks.read(disk as u16, offset, len);
        let mark = self.dirty.mark(disk, offset, len)?;
        d.zero(offset, len, punch)?;
        let mut at = offset;
        let mut last = Some(LocalSeq(0));
        while at < offset + len {
            let n = (offset + len - at).min(u64::from(MAX_RECORD_LEN));
            let record = Record::new(disk as u16, RecordKind::Zero, at, n as u32, None);
            // One record dropped (bitmap mode) pins the whole range.
            last = last.zip(self.queue.push(record)?.seq()).map(|(_, s)| s);
            at += n;
        }
        mark.recorded(last);
        Ok(())
    }

    /// Flush: every write submitted before completes, then the backing disk makes everything
    /// written so far durable.
    pub fn flush(&self, disk: usize) -> Result<()> {
        if let Some(u) = &self.uring {
            u.wait_submitted();
        }
        self.disks[disk].sync()
    }
}

/// Checks an io_uring write's result; a short write is finished, and a refused one (EINVAL:
/// O_DIRECT alignment the device does not accept) redone, synchronously.
fn complete(d: &Backing, buf: &[u8], offset: u64, r: io::Result<usize>) -> Result<()> {
    match r {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(0) => Err(Error::disk(&d.name, "write", offset)(io::Error::new(
            io::ErrorKind::WriteZero,
            "io_uring write wrote nothing",
        ))),
        Ok(n) if n < buf.len() => d.write_at(&buf[n..], offset + n as u64),
        Ok(n) => Err(Error::disk(&d.name, "write", offset)(io::Error::other(
            format!("io_uring wrote {n} bytes of {}", buf.len()),
        ))),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EAGAIN)) => {
            d.write_at(buf, offset)
        }
        Err(e) => Err(Error::disk(&d.name, "write", offset)(e)),
    }
}
