//! The io_uring backing writer: FUSE threads submit writes and return at once; one reaper thread
//! takes the completions and finishes each write (records it, replies to the kernel).
//!
//! With synchronous pwrites the backing disk's queue depth is the number of FUSE threads, each
//! parked in the kernel for a whole write. Here a handler copies the data into a pooled aligned
//! buffer, submits it and goes back to reading requests, so the depth is whatever the kernel sends
//! (async direct IO: up to `max_background`), bounded by the ring's size.
//!
//! Every submitted buffer stays owned by the in-flight table, keyed by `user_data`, until its
//! completion arrives. One thread owns the ring and does all submitting and reaping: handlers
//! queue their entries and wake it through an eventfd that the ring always has a read armed on.
//! (Submitting from the handlers' threads instead made the kernel run each completion on the
//! submitting thread, which sits in a FUSE read: throughput collapsed.) Each write gets a
//! ticket in submission order, so a flush can wait for every write submitted before it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use io_uring::{opcode, squeue, types, IoUring, Probe};

use rewind_linux::aligned::AlignedBuf;

/// What to do once a write completed: gets the buffer back and the bytes written (possibly fewer
/// than asked) or the error. Runs on the reaper thread.
pub type OnDone = Box<dyn FnOnce(AlignedBuf, io::Result<usize>) + Send>;

/// `user_data` of the eventfd read that wakes the ring's thread.
const WAKE: u64 = u64::MAX;

struct Op {
    buf: AlignedBuf,
    on_done: OnDone,
}

/// A slot of the in-flight table: the ticket stays until the op's `on_done` has returned, so a
/// flush also waits for work the completion does (a fallback write after a short one).
struct Slot {
    ticket: u64,
    op: Option<Op>,
}

struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    next_ticket: u64,
    /// Threads waiting on `freed` (a completion wakes them only if there are any).
    waiting: usize,
}

/// Entries waiting for the ring's thread.
#[derive(Default)]
struct Pending {
    entries: Vec<squeue::Entry>,
    /// The ring's thread is (about to be) waiting in the kernel: the next submitter wakes it.
    sleeping: bool,
}

struct Shared {
    table: Mutex<Table>,
    /// Signalled when a slot is freed.
    freed: Condvar,
    pending: Mutex<Pending>,
    wake: OwnedFd,
    stopping: AtomicBool,
}

/// The ring and its thread; dropping it waits for the writes in flight and stops.
pub struct UringWriter {
    shared: Arc<Shared>,
    reaper: Option<JoinHandle<()>>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self, sqe: Option<squeue::Entry>) {
        let mut p = self.pending();
        p.entries.extend(sqe);
        let wake = std::mem::take(&mut p.sleeping);
        drop(p);
        if wake {
            self.kick();
        }
    }

    fn kick(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to the eventfd we own.
        let r = unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if r != 8 {
            tracing::error!(error = %io::Error::last_os_error(), "capture: waking the io_uring thread");
        }
    }
}

impl UringWriter {
    /// A ring of `entries` (also the most writes in flight) and its thread. Fails if the kernel
    /// has no io_uring or lacks an opcode we use (use the synchronous engine then).
    pub fn new(entries: u32) -> io::Result<UringWriter> {
        let ring = IoUring::new(entries * 2)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [(opcode::Write::CODE, "WRITE"), (opcode::Read::CODE, "READ")] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {name} is not supported by this kernel"),
                ));
            }
        }
        // SAFETY: eventfd with plain flags; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let n = entries as usize;
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                slots: (0..n).map(|_| None).collect(),
                free: (0..n).rev().collect(),
                next_ticket: 1,
                waiting: 0,
            }),
            freed: Condvar::new(),
            pending: Mutex::new(Pending::default()),
            wake,
            stopping: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let reaper = std::thread::Builder::new()
            .name("capture-uring".into())
            .spawn(move || run(ring, &sh))?;
        Ok(UringWriter {
            shared,
            reaper: Some(reaper),
        })
    }

    /// Writes `buf` at `offset` of `fd`; `on_done` runs on the ring's thread once it completed.
    /// Waits only while the ring is full. `fd` must stay open until then (the caller's
    /// `on_done` holds what owns it).
    pub fn write(&self, fd: RawFd, offset: u64, buf: AlignedBuf, on_done: OnDone) {
        let sh = &self.shared;
        let mut t = sh.table();
        let i = loop {
            match t.free.pop() {
                Some(i) => break i,
                None => {
                    t.waiting += 1;
                    t = sh.freed.wait(t).unwrap_or_else(|e| e.into_inner());
                    t.waiting -= 1;
                }
            }
        };
        let ticket = t.next_ticket;
        t.next_ticket += 1;
        let sqe = opcode::Write::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
            .offset(offset)
            .build()
            .user_data(i as u64);
        t.slots[i] = Some(Slot {
            ticket,
            op: Some(Op { buf, on_done }),
        });
        drop(t);
        sh.queue(Some(sqe));
    }

    /// Waits until every write submitted before this call has completed and been finished.
    pub fn wait_submitted(&self) {
        let sh = &self.shared;
        let mut t = sh.table();
        let upto = t.next_ticket;
        while t.slots.iter().flatten().any(|s| s.ticket < upto) {
            t.waiting += 1;
            t = sh.freed.wait(t).unwrap_or_else(|e| e.into_inner());
            t.waiting -= 1;
        }
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.kick();
        if let Some(r) = self.reaper.take() {
            let _ = r.join();
        }
    }
}

/// The ring's thread: submits what handlers queued, waits, finishes completions.
fn run(mut ring: IoUring, sh: &Shared) {
    // The eventfd read stays armed until the ring is gone, and the kernel may still be tearing
    // the ring down after this returns: its 8 bytes are leaked, once per ring.
    let wake_buf: &'static mut [u8; 8] = Box::leak(Box::new([0u8; 8]));
    let mut armed = false;
    let mut batch: Vec<squeue::Entry> = Vec::new();
    loop {
        if !armed {
            let read = opcode::Read::new(
                types::Fd(sh.wake.as_raw_fd()),
                wake_buf.as_mut_ptr(),
                wake_buf.len() as u32,
            )
            .build()
            .user_data(WAKE);
            batch.push(read);
            armed = true;
        }
        {
            let mut p = sh.pending();
            batch.append(&mut p.entries);
            // Nothing to submit: wait in the kernel, and have the next submitter wake us.
            p.sleeping = batch.is_empty();
        }
        let wait = usize::from(batch.is_empty());
        for sqe in batch.drain(..) {
            loop {
                // SAFETY: each entry's buffer is owned by the in-flight table until its
                // completion, or is `wake_buf`, which is never freed.
                if unsafe { ring.submission().push(&sqe) }.is_ok() {
                    break;
                }
                submit(&ring, 0);
            }
        }
        submit(&ring, wait);
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in done {
            if ud == WAKE {
                armed = false;
                continue;
            }
            finish(sh, ud as usize, res);
        }
        if sh.stopping.load(Ordering::SeqCst) && sh.table().slots.iter().all(Option::is_none) {
            return;
        }
    }
}

fn submit(ring: &IoUring, want: usize) {
    loop {
        match ring.submitter().submit_and_wait(want) {
            Ok(_) => return,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // Completions are backed up: return and reap them.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => return,
            Err(e) => {
                tracing::error!(error = %e, "capture: io_uring submit");
                std::thread::sleep(std::time::Duration::from_millis(10));
                return;
            }
        }
    }
}

fn finish(sh: &Shared, i: usize, res: i32) {
    let op = sh
        .table()
        .slots
        .get_mut(i)
        .and_then(|s| s.as_mut())
        .and_then(|s| s.op.take());
    let Some(op) = op else {
        tracing::error!(user_data = i, "capture: io_uring completion for no write");
        return;
    };
    let r = if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    };
    (op.on_done)(op.buf, r);
    let mut t = sh.table();
    t.slots[i] = None;
    t.free.push(i);
    let wake = t.waiting > 0;
    drop(t);
    if wake {
        sh.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_linux::aligned::Pool;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    use std::sync::mpsc;

    #[test]
    fn writes_complete_and_flush_waits() {
        let w = match UringWriter::new(8) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("SKIPPED: no io_uring here: {e}");
                return;
            }
        };
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.path().join("f"))
            .unwrap();
        f.set_len(1 << 20).unwrap();
        let pool = Pool::new();
        let (tx, rx) = mpsc::channel();
        // More writes than slots: submitters wait for free ones.
        for k in 0..32u64 {
            let mut b = pool.get(4096);
            b.fill(k as u8 + 1);
            let tx = tx.clone();
            w.write(
                f.as_raw_fd(),
                k * 4096,
                b,
                Box::new(move |buf, r| tx.send((k, buf.len(), r.unwrap())).unwrap()),
            );
        }
        w.wait_submitted();
        let mut got: Vec<_> = rx.try_iter().collect();
        got.sort_unstable();
        assert_eq!(
            got.len(),
            32,
            "every write finished before wait_submitted returned"
        );
        assert!(got.iter().all(|&(_, len, n)| len == 4096 && n == 4096));
        let mut back = vec![0u8; 4096];
        f.read_exact_at(&mut back, 31 * 4096).unwrap_or_else(|_| {
            // O_DIRECT read into unaligned memory may be refused; read buffered instead.
            let g = std::fs::File::open(dir.path().join("f")).unwrap();
            g.read_exact_at(&mut back, 31 * 4096).unwrap();
        });
        assert!(back.iter().all(|&b| b == 32));
        drop(w);
    }
}
