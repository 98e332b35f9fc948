//! One FUSE-over-io_uring queue: a thread, pinned to its CPU, owning one ring that carries both
//! the FUSE commands (REGISTER, then COMMIT_AND_FETCH per request) and the backing disk IO.
//!
//! The kernel hands a request to the queue of the CPU that issued it, by completing one of the
//! queue's outstanding commands with the request in that entry's buffers. A write's data lands
//! in the entry's payload buffer; the backing write goes to the disk straight from there, while
//! the thread copies the bytes once into the pooled buffer the record keeps (the payload
//! buffer is the kernel's for the next request as soon as we commit, so it cannot be the
//! record's). Reads land in the payload buffer and are committed in place. The commit of the
//! reply fetches the entry's next request in the same system call.
//!
//! The thread never blocks on another write: a write that would wait (an overlapping write in
//! flight, which this very thread must complete, or a sync holding the range) goes to the
//! helper thread ([`helper`]), which posts its reply back through an eventfd the ring reads.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use rewind_linux::aligned::AlignedBuf;
use rewind_linux::huge_pages::{HugeRegion, HugeSlice};

use super::abi::{self, InHeader, Out};
use super::ops::{error_errno, Action, Files};
use crate::capture::{Admission, Admitted, WriteBytes};

/// `user_data` kinds (high 32 bits; the low 32 are the entry).
const CMD: u64 = 0;
const IO: u64 = 1;
const WAKE: u64 = 2;

/// Replies the helper thread finished, for the queue to commit: (entry, error, reply args).
pub struct Mailbox {
    efd: OwnedFd,
    done: Mutex<Vec<(usize, i32, Vec<u8>)>>,
}

impl Mailbox {
    pub fn new() -> io::Result<Arc<Mailbox>> {
        // SAFETY: eventfd with plain flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Arc::new(Mailbox {
            // SAFETY: efd is a fresh descriptor nothing else owns.
            efd: unsafe { OwnedFd::from_raw_fd(efd) },
            done: Mutex::new(Vec::new()),
        }))
    }

    pub fn post(&self, ent: usize, error: i32, args: Vec<u8>) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ent, error, args));
        self.kick();
    }

    pub fn kick(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to the eventfd we own.
        let r = unsafe { libc::write(self.efd.as_raw_fd(), one.as_ptr().cast(), 8) };
        if r != 8 {
            tracing::error!(error = %io::Error::last_os_error(), "capture: waking a FUSE queue");
        }
    }

    fn take(&self) -> Vec<(usize, i32, Vec<u8>)> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Work the queue threads must not do themselves, because it may wait on them.
pub enum Job {
    Write {
        disk: usize,
        offset: u64,
        data: AlignedBuf,
    },
    Zero {
        disk: usize,
        offset: u64,
        len: u64,
        punch: bool,
    },
}

/// A job and where its reply goes.
pub struct HelperJob {
    pub job: Job,
    pub ent: usize,
    pub to: Arc<Mailbox>,
}

/// The helper thread: runs each job with the blocking capture calls, posts the reply.
pub fn helper(files: &Files, jobs: mpsc::Receiver<HelperJob>) {
    let c = &files.capture;
    for HelperJob { job, ent, to } in jobs {
        let r = match job {
            Job::Write { disk, offset, data } => c
                .write(disk, offset, &data)
                .map(|()| Out::default().u32(data.len() as u32).u32(0).0),
            Job::Zero {
                disk,
                offset,
                len,
                punch,
            } => c.zero(disk, offset, len, punch).map(|()| Vec::new()),
        };
        match r {
            Ok(args) => to.post(ent, 0, args),
            Err(e) => to.post(ent, -error_errno(&e), Vec::new()),
        }
    }
}

/// Where an entry is.
enum State {
    /// Its command is with the kernel, waiting for a request.
    Fetching,
    /// The backing write from its payload is in flight; the record's copy waits here (none
    /// in bitmap mode: the payload is copied at completion if the record is kept after all).
    Writing(Admitted, Option<AlignedBuf>),
    Reading {
        disk: usize,
        offset: u64,
        len: usize,
    },
    Syncing,
    /// The helper thread has it.
    Helper,
    /// The connection is gone.
    Dead,
}

/// One ring entry: its buffers and where its request is.
pub struct Ent {
    /// struct fuse_uring_req_header.
    hdr: AlignedBuf,
    /// In a huge page: a backing write from it is one device request (see [`HugeRegion`]).
    payload: HugeSlice,
    /// iov[0] the header, iov[1] the payload: what REGISTER hands the kernel.
    iov: Box<[libc::iovec; 2]>,
    unique: u64,
    state: State,
    /// When its write request arrived: the reply feeds `rewind_capture_seconds`, as the
    /// `/dev/fuse` transport's does.
    write_started: Option<Instant>,
}

/// One queue's setup.
pub struct Queue {
    pub qid: u16,
    pub depth: usize,
    pub payload_len: usize,
    pub fuse: Arc<OwnedFd>,
    pub files: Arc<Files>,
    pub mailbox: Arc<Mailbox>,
    pub helper: mpsc::Sender<HelperJob>,
    pub stop: Arc<AtomicBool>,
}

pub type Ring = IoUring<squeue::Entry128, cqueue::Entry>;

/// A queue's ring and its entries, registered with the kernel.
pub struct Registered {
    ring: Ring,
    ents: Vec<Ent>,
    /// The payload buffers are the ring's fixed buffers (entry i is buffer i): the backing IO
    /// then pins no pages per request.
    fixed: bool,
}

impl Queue {
    /// Registers the queue's entries; returns the ring to [`Queue::run`], or why not.
    pub fn register(&self) -> io::Result<Registered> {
        // Affinity follows the kernel's routing (a request goes to its CPU's queue), so the
        // request's task work runs where it was issued. Best effort.
        // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays inside it (the qid is below the
        // possible CPUs, far below CPU_SETSIZE), and sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(usize::from(self.qid), &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
        let sq = (2 * self.depth + 2).next_power_of_two() as u32;
        let ring: Ring = IoUring::builder().setup_cqsize(2 * sq).build(sq)?;
        let payloads = HugeRegion::slices(self.depth, self.payload_len)?;
        let mut ents: Vec<Ent> = payloads
            .into_iter()
            .map(|mut payload| {
                let mut hdr = AlignedBuf::new(abi::RING_HEADER_LEN);
                let iov = Box::new([
                    libc::iovec {
                        iov_base: hdr.as_mut_ptr().cast(),
                        iov_len: hdr.len(),
                    },
                    libc::iovec {
                        iov_base: payload.as_mut_ptr().cast(),
                        iov_len: payload.len(),
                    },
                ]);
                Ent {
                    hdr,
                    payload,
                    iov,
                    unique: 0,
                    state: State::Fetching,
                    write_started: None,
                }
            })
            .collect();
        let bufs: Vec<libc::iovec> = ents.iter().map(|e| e.iov[1]).collect();
        // SAFETY: the payload buffers live in `ents`, which the ring's thread keeps (and never
        // reallocates: boxed AlignedBufs) until the ring is dropped.
        let fixed = match unsafe { ring.submitter().register_buffers(&bufs) } {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "capture: io_uring fixed buffers refused; \
                    the backing IO pins its pages per request");
                false
            }
        };
        let mut q = Submit { ring: &ring };
        for (i, e) in ents.iter_mut().enumerate() {
            let sqe = self.cmd(abi::URING_CMD_REGISTER, 0, Some(&e.iov), i);
            q.push(&sqe);
        }
        q.ring.submit()?;
        // A refused REGISTER completes at once; a good one stays with the kernel.
        let mut refused = None;
        let mut done = Vec::new();
        take_completions(&ring, &mut done);
        for c in done {
            if c.1 < 0 {
                refused = Some(io::Error::from_raw_os_error(-c.1));
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        Ok(Registered { ring, ents, fixed })
    }

    /// A FUSE command SQE for entry `ent`.
    fn cmd(
        &self,
        op: u32,
        commit_id: u64,
        iov: Option<&[libc::iovec; 2]>,
        ent: usize,
    ) -> squeue::Entry128 {
        // struct fuse_uring_cmd_req: flags u64, commit_id u64, qid u16, padding.
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_le_bytes());
        let mut b = opcode::UringCmd80::new(types::Fd(self.fuse.as_raw_fd()), op).cmd(cmd);
        if let Some(iov) = iov {
            b = b.addr(Some(iov.as_ptr() as u64));
        }
        let sqe = b.build().user_data(CMD << 32 | ent as u64);
        match iov {
            Some(_) => with_len(sqe, 2),
            None => sqe,
        }
    }

    /// Serves requests until the connection ends (or, after an unmount, `stop`).
    pub fn run(&self, r: Registered) {
        let Registered {
            ring,
            mut ents,
            fixed,
        } = r;
        let wake_buf: &'static mut [u8; 8] = Box::leak(Box::new([0u8; 8]));
        let mut armed = false;
        let mut done = Vec::with_capacity(2 * self.depth);
        loop {
            let mut q = Submit { ring: &ring };
            if !armed {
                let read = opcode::Read::new(
                    types::Fd(self.mailbox.efd.as_raw_fd()),
                    wake_buf.as_mut_ptr(),
                    8,
                )
                .build()
                .user_data(WAKE << 32);
                q.push(&read.into());
                armed = true;
            }
            let live = ents.iter().any(|e| !matches!(e.state, State::Dead));
            let busy = ents
                .iter()
                .any(|e| !matches!(e.state, State::Dead | State::Fetching));
            if !live || (self.stop.load(Ordering::Acquire) && !busy) {
                return;
            }
            if let Err(e) = submit_wait(&ring) {
                tracing::error!(qid = self.qid, error = %e, "capture: FUSE queue ring");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            take_completions(&ring, &mut done);
            for &(ud, res) in &done {
                let i = (ud & 0xffff_ffff) as usize;
                match ud >> 32 {
                    WAKE => {
                        armed = false;
                        for (ent, err, args) in self.mailbox.take() {
                            self.commit(&mut q, &mut ents[ent], ent, err, Some(&args));
                        }
                    }
                    CMD if res < 0 => self.refused(&mut q, &mut ents[i], i, res),
                    CMD => self.request(&mut q, &mut ents[i], i, fixed),
                    _ => self.io_done(&mut q, &mut ents[i], i, res),
                }
            }
        }
    }

    fn refused(&self, q: &mut Submit<'_>, e: &mut Ent, i: usize, res: i32) {
        match -res {
            libc::EAGAIN | libc::EINTR => {
                let sqe = self.cmd(abi::URING_CMD_REGISTER, 0, Some(&e.iov), i);
                q.push(&sqe);
            }
            libc::ENOTCONN | libc::ECANCELED | libc::ENODEV => e.state = State::Dead,
            err => {
                tracing::error!(qid = self.qid, error = %io::Error::from_raw_os_error(err),
                    "capture: a FUSE queue command failed");
                e.state = State::Dead;
            }
        }
    }

    /// A request arrived in entry `i`.
    fn request(&self, q: &mut Submit<'_>, e: &mut Ent, i: usize, fixed: bool) {
        let Some(h) = InHeader::parse(&e.hdr[..abi::IN_HEADER_LEN]) else {
            return;
        };
        e.unique = abi::u64_at(&e.hdr, abi::RING_COMMIT_ID);
        let payload_sz = (abi::u32_at(&e.hdr, abi::RING_PAYLOAD_SZ) as usize).min(e.payload.len());
        let arg = &e.hdr[abi::RING_OP_IN..abi::RING_OP_IN + abi::RING_OP_IN_LEN];
        let c = &self.files.capture;
        let action = self.files.decide(&h, arg, &e.payload[..payload_sz]);
        if matches!(action, Action::Write { .. }) {
            e.write_started = Some(Instant::now());
        }
        match action {
            Action::Reply(err, args) => self.commit(q, e, i, err, Some(&args)),
            Action::Nothing => self.commit(q, e, i, 0, Some(&[])),
            Action::Write { disk, offset, len } => match c.try_admit(disk, offset, len) {
                Ok(Admission::Ready(a)) => {
                    let (fd, buf) = (types::Fd(a.fd()), e.payload.as_ptr());
                    let sqe = if fixed {
                        opcode::WriteFixed::new(fd, buf, len as u32, i as u16)
                            .offset(offset)
                            .build()
                    } else {
                        opcode::Write::new(fd, buf, len as u32)
                            .offset(offset)
                            .build()
                    };
                    q.push(&sqe.user_data(IO << 32 | i as u64).into());
                    // The record's own copy, made while the disk writes; in bitmap mode the
                    // record will be dropped, so none (a third of this thread's time for
                    // 1 MiB writes).
                    let buf = (!c.dropping_records()).then(|| {
                        let mut buf = c.pool.get(len);
                        buf.copy_from_slice(&e.payload[..len]);
                        buf
                    });
                    e.state = State::Writing(a, buf);
                }
                Ok(Admission::Busy) => {
                    let data = AlignedBuf::copy_from(&e.payload[..len]);
                    self.to_helper(e, i, Job::Write { disk, offset, data });
                }
                Err(err) => self.commit(q, e, i, -error_errno(&err), None),
            },
            Action::Read { disk, offset, len } if len > 0 => {
                let (fd, buf) = (types::Fd(c.disks[disk].direct_fd()), e.payload.as_mut_ptr());
                let sqe = if fixed {
                    opcode::ReadFixed::new(fd, buf, len as u32, i as u16)
                        .offset(offset)
                        .build()
                } else {
                    opcode::Read::new(fd, buf, len as u32)
                        .offset(offset)
                        .build()
                };
                q.push(&sqe.user_data(IO << 32 | i as u64).into());
                e.state = State::Reading { disk, offset, len };
            }
            Action::Read { .. } => self.commit(q, e, i, 0, Some(&[])),
            Action::Sync { disk } => {
                let fd = c.disks[disk].direct_fd();
                let sqe = opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(IO << 32 | i as u64);
                q.push(&sqe.into());
                e.state = State::Syncing;
            }
            Action::Zero {
                disk,
                offset,
                len,
                punch,
            } => self.to_helper(
                e,
                i,
                Job::Zero {
                    disk,
                    offset,
                    len,
                    punch,
                },
            ),
        }
    }

    fn to_helper(&self, e: &mut Ent, i: usize, job: Job) {
        e.state = State::Helper;
        let job = HelperJob {
            job,
            ent: i,
            to: Arc::clone(&self.mailbox),
        };
        if self.helper.send(job).is_err() {
            // Only at teardown: answer EIO through the mailbox, like any helper reply.
            self.mailbox.post(i, -libc::EIO, Vec::new());
        }
    }

    /// The backing IO of entry `i` finished with `res`.
    fn io_done(&self, q: &mut Submit<'_>, e: &mut Ent, i: usize, res: i32) {
        let r = if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        };
        let c = &self.files.capture;
        match std::mem::replace(&mut e.state, State::Fetching) {
            State::Writing(a, buf) => {
                let len = a.bytes();
                let bytes = match buf {
                    Some(buf) => WriteBytes::Copied(buf),
                    // The payload is ours until the commit below.
                    None => WriteBytes::InPlace(&e.payload[..len]),
                };
                match c.record(a, bytes, r) {
                    Ok(n) => self.commit(q, e, i, 0, Some(&Out::default().u32(n).u32(0).0)),
                    Err(err) => self.commit(q, e, i, -error_errno(&err), None),
                }
            }
            State::Reading { disk, offset, len } => {
                // A short read, or one O_DIRECT refused: finish it synchronously.
                let r = match r {
                    Ok(n) if n == len => Ok(()),
                    Ok(n) if n > 0 => {
                        c.disks[disk].read_at(&mut e.payload[n..len], offset + n as u64)
                    }
                    _ => c.disks[disk].read_at(&mut e.payload[..len], offset),
                };
                match r {
                    Ok(()) => self.commit_in_place(q, e, i, len),
                    Err(err) => self.commit(q, e, i, -error_errno(&err), None),
                }
            }
            State::Syncing => match r {
                Ok(_) => self.commit(q, e, i, 0, Some(&[])),
                Err(err) => {
                    tracing::error!(error = %err, "capture: fdatasync of a backing disk");
                    self.commit(q, e, i, -err.raw_os_error().unwrap_or(libc::EIO), None)
                }
            },
            other => {
                tracing::error!(
                    qid = self.qid,
                    ent = i,
                    "capture: IO completion for an idle entry"
                );
                e.state = other;
            }
        }
    }

    /// Commits the reply in entry `i` (`args` copied into its payload; `None`: no args) and
    /// fetches its next request.
    fn commit(&self, q: &mut Submit<'_>, e: &mut Ent, i: usize, err: i32, args: Option<&[u8]>) {
        let args = if err != 0 {
            &[][..]
        } else {
            args.unwrap_or(&[])
        };
        let n = args.len().min(e.payload.len());
        e.payload[..n].copy_from_slice(&args[..n]);
        self.commit_with(q, e, i, err, n);
    }

    fn commit_in_place(&self, q: &mut Submit<'_>, e: &mut Ent, i: usize, len: usize) {
        self.commit_with(q, e, i, 0, len);
    }

    fn commit_with(&self, q: &mut Submit<'_>, e: &mut Ent, i: usize, err: i32, n: usize) {
        if let Some(t) = e.write_started.take() {
            crate::metrics::capture::LATENCY.observe(t.elapsed());
        }
        e.hdr[..abi::OUT_HEADER_LEN].copy_from_slice(&abi::out_header(e.unique, err, n));
        e.hdr[abi::RING_PAYLOAD_SZ..abi::RING_PAYLOAD_SZ + 4]
            .copy_from_slice(&(n as u32).to_le_bytes());
        e.state = State::Fetching;
        let sqe = self.cmd(abi::URING_CMD_COMMIT_AND_FETCH, e.unique, None, i);
        q.push(&sqe);
    }
}

/// Pushes SQEs, submitting when the queue is full.
struct Submit<'a> {
    ring: &'a Ring,
}

impl Submit<'_> {
    fn push(&mut self, sqe: &squeue::Entry128) {
        loop {
            // SAFETY: every buffer an entry points at (header, payload, iovecs, the wake
            // buffer) lives in the queue's entries or is leaked, until the ring is gone.
            if unsafe { self.ring.submission_shared().push(sqe) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(error = %e, "capture: FUSE queue submit");
            }
        }
    }
}

fn submit_wait(ring: &Ring) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // Completions are backed up: reap them first.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    }
}

/// Replaces `into`'s contents with every completion now in the ring: (user_data, result).
fn take_completions(ring: &Ring, into: &mut Vec<(u64, i32)>) {
    into.clear();
    // SAFETY: only this thread reads the completion queue.
    into.extend(unsafe { ring.completion_shared() }.map(|c| (c.user_data(), c.result())));
}

/// Sets the SQE's `len` field, which io-uring's `UringCmd80` builder has no setter for; FUSE
/// REGISTER reads the iovec count there.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    const LEN_AT: usize = 24; // struct io_uring_sqe: opcode, flags, ioprio, fd, off, addr, len
    const _: () = assert!(size_of::<squeue::Entry128>() == 128);
    // SAFETY: Entry128 is a repr(C) 128-byte SQE (asserted above) made only of integers, so
    // any byte pattern is valid; `len` is the u32 at offset 24 of struct io_uring_sqe.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[LEN_AT..LEN_AT + 4].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}
