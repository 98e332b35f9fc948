//! The io_uring engine: one ring owned by the writer thread.
//!
//! All writes of a group commit are submitted together and reaped together; then one fdatasync per
//! touched file. The buffers are borrowed from the caller for the whole call and the call returns
//! only when every submitted entry has completed, so the kernel never sees a freed buffer. Short
//! writes are resubmitted for their remainder.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring, Probe};

use super::{IoEngine, WriteOp};

pub(crate) struct UringEngine {
    ring: IoUring,
    entries: u32,
}

/// One write in flight or still to submit: op index, bytes done so far.
struct Pending {
    op: usize,
    done: usize,
}

impl UringEngine {
    pub(crate) fn new(entries: u32) -> io::Result<UringEngine> {
        let ring = IoUring::new(entries)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Write::CODE, "WRITE"),
            (opcode::Fsync::CODE, "FSYNC"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {name} is not supported by this kernel; use --io-engine sync"),
                ));
            }
        }
        Ok(UringEngine { ring, entries })
    }

    /// Submit entries from `queue` while there is room, wait for at least one completion, and
    /// hand every completion to `on_done(user_data, result)`. Returns when queue and ring are empty.
    fn drive(
        &mut self,
        queue: &mut Vec<io_uring::squeue::Entry>,
        mut on_done: impl FnMut(u64, i32, &mut Vec<io_uring::squeue::Entry>),
    ) -> io::Result<()> {
        let mut in_flight = 0usize;
        loop {
            while in_flight < self.entries as usize {
                let Some(sqe) = queue.pop() else { break };
                // SAFETY: every entry points at a buffer borrowed for the whole `write_all` call (or
                // at no buffer: fsync), and we do not return before all in-flight entries complete.
                unsafe { self.ring.submission().push(&sqe) }
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
                in_flight += 1;
            }
            if in_flight == 0 {
                return Ok(());
            }
            loop {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => break,
                    Err(e)
                        if e.kind() == io::ErrorKind::Interrupted
                            || e.raw_os_error() == Some(libc::EBUSY) =>
                    {
                        continue
                    }
                    // Entries may still be in flight: the caller treats this as fatal for the store
                    // and keeps the buffers alive (the writer thread stops using them).
                    Err(e) => return Err(e),
                }
            }
            let done: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (ud, res) in done {
                in_flight -= 1;
                on_done(ud, res, queue);
            }
        }
    }
}

fn write_sqe(op: &WriteOp<'_>, done: usize, user_data: u64) -> io_uring::squeue::Entry {
    let rest = &op.buf[done..];
    let len = rest.len().min(1 << 30) as u32;
    opcode::Write::new(types::Fd(op.fd), rest.as_ptr(), len)
        .offset(op.offset + done as u64)
        .build()
        .user_data(user_data)
}

impl IoEngine for UringEngine {
    fn write_all(&mut self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        let mut pending: Vec<Pending> = (0..ops.len()).map(|op| Pending { op, done: 0 }).collect();
        let mut queue: Vec<_> = ops
            .iter()
            .enumerate()
            .rev()
            .map(|(i, op)| write_sqe(op, 0, i as u64))
            .collect();
        let mut first_err: Option<io::Error> = None;
        self.drive(&mut queue, |ud, res, queue| {
            let p = &mut pending[ud as usize];
            if res < 0 {
                first_err.get_or_insert(io::Error::from_raw_os_error(-res));
                return;
            }
            if res == 0 {
                first_err.get_or_insert(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "io_uring write wrote nothing",
                ));
                return;
            }
            p.done += res as usize;
            let op = &ops[p.op];
            if p.done < op.buf.len() && first_err.is_none() {
                queue.push(write_sqe(op, p.done, ud));
            }
        })?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn sync_all(&mut self, fds: &[RawFd]) -> io::Result<()> {
        let mut queue: Vec<_> = fds
            .iter()
            .enumerate()
            .map(|(i, &fd)| {
                opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(i as u64)
            })
            .collect();
        let mut first_err: Option<io::Error> = None;
        self.drive(&mut queue, |_, res, _| {
            if res < 0 {
                first_err.get_or_insert(io::Error::from_raw_os_error(-res));
            }
        })?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }
}
