//! The `/dev/fuse` side of the capture server: it answers INIT (asking for FUSE over io_uring),
//! then serves whatever still reaches `/dev/fuse` once the queues run (forgets, interrupts, and
//! everything if the kernel turned the rings down), one request at a time, synchronously.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;

use super::abi::{self, op, InHeader, Out};
use super::ops::{error_errno, Action, Files};

/// What INIT settled.
#[derive(Clone, Copy, Debug)]
pub struct Init {
    /// The kernel accepted FUSE over io_uring for this connection.
    pub uring: bool,
}

/// The most async direct IO requests the kernel may queue to us at once.
pub const MAX_BACKGROUND: u16 = 64;
/// Largest write (and read) per request: 1 MiB, 256 pages.
pub const MAX_WRITE: u32 = 1 << 20;

/// Reads and answers requests on `fd` until the connection ends (unmount: ENODEV). INIT's
/// outcome goes to `init`.
pub fn serve(fd: &OwnedFd, files: &Files, want_uring: bool, init: mpsc::Sender<Init>) {
    let mut buf = vec![0u8; MAX_WRITE as usize + 64 * 1024];
    // Once the rings serve, only forgets and interrupts should come this way; anything else
    // means the kernel dropped back to /dev/fuse (said once: it is slow, not wrong).
    let mut granted = false;
    let mut said = false;
    loop {
        // SAFETY: reads into a live buffer of the given length from a descriptor we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Interrupted, or a request the kernel withdrew before we read it.
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                Some(libc::ENODEV) => return,
                _ => {
                    tracing::error!(error = %io::Error::last_os_error(), "capture: reading /dev/fuse");
                    return;
                }
            }
        }
        let req = &buf[..n as usize];
        let Some(h) = InHeader::parse(req) else {
            tracing::error!(len = n, "capture: short request on /dev/fuse");
            continue;
        };
        let body = &req[abi::IN_HEADER_LEN..];
        if h.opcode == op::INIT {
            let (reply, g) = init_reply(body, want_uring);
            granted = g;
            let _ = init.send(Init { uring: g });
            send(fd, h.unique, 0, &reply);
            continue;
        }
        if granted && !said && !matches!(h.opcode, op::FORGET | op::BATCH_FORGET | op::INTERRUPT) {
            said = true;
            tracing::warn!(
                opcode = h.opcode,
                "capture: requests arrive on /dev/fuse, not the io_uring queues; serving them \
                 one at a time"
            );
        }
        // A write's data follows its 40-byte struct fuse_write_in; other requests are whole.
        let (arg, extra) = if h.opcode == op::WRITE && body.len() >= 40 {
            body.split_at(40)
        } else {
            (body, &[][..])
        };
        match files.decide(&h, arg, extra) {
            Action::Nothing => {}
            Action::Reply(e, data) => send(fd, h.unique, e, &data),
            action => {
                let (e, data) = run(files, action, extra);
                send(fd, h.unique, e, &data);
            }
        }
    }
}

/// Carries out a data operation on this thread; returns the reply.
fn run(files: &Files, action: Action, extra: &[u8]) -> (i32, Vec<u8>) {
    let c = &files.capture;
    let r = match action {
        Action::Write { disk, offset, len } => c
            .write(disk, offset, &extra[..len])
            .map(|()| Out::default().u32(len as u32).u32(0).0),
        Action::Read { disk, offset, len } => c.read(disk, offset, len as u32).map(|b| b.to_vec()),
        Action::Sync { disk } => c.flush(disk).map(|()| Vec::new()),
        Action::Zero {
            disk,
            offset,
            len,
            punch,
        } => c.zero(disk, offset, len, punch).map(|()| Vec::new()),
        Action::Reply(e, data) => return (e, data),
        Action::Nothing => return (0, Vec::new()),
    };
    match r {
        Ok(data) => (0, data),
        Err(e) => (-error_errno(&e), Vec::new()),
    }
}

/// struct fuse_init_out for the kernel's struct fuse_init_in `body`, and whether it grants
/// FUSE over io_uring.
fn init_reply(body: &[u8], want_uring: bool) -> (Vec<u8>, bool) {
    let (major, minor) = (abi::u32_at(body, 0), abi::u32_at(body, 4));
    let readahead = abi::u32_at(body, 8);
    let flags = abi::u32_at(body, 12);
    let flags2 = if flags & abi::INIT_EXT != 0 {
        abi::u32_at(body, 16)
    } else {
        0
    };
    if major != abi::KERNEL_MAJOR {
        tracing::error!(
            major,
            "capture: the kernel speaks another FUSE major version"
        );
    }
    let want = abi::ASYNC_READ | abi::BIG_WRITES | abi::ASYNC_DIO | abi::MAX_PAGES | abi::INIT_EXT;
    let uring = want_uring && flags2 & abi::OVER_IO_URING2 != 0;
    if flags & abi::ASYNC_DIO == 0 {
        tracing::warn!("capture: the kernel lacks FUSE async direct IO; writes will be slower");
    }
    let o = Out::default()
        .u32(abi::KERNEL_MAJOR)
        .u32(minor.min(abi::KERNEL_MINOR))
        .u32(readahead)
        .u32(flags & want)
        .u16(MAX_BACKGROUND)
        .u16(MAX_BACKGROUND * 3 / 4)
        .u32(MAX_WRITE)
        .u32(1)
        .u16((MAX_WRITE / 4096) as u16)
        .u16(0)
        .u32(if uring { abi::OVER_IO_URING2 } else { 0 })
        .zeros(28);
    (o.0, uring)
}

/// Writes one reply (header and `args`) to `/dev/fuse`.
pub fn send(fd: &OwnedFd, unique: u64, error: i32, args: &[u8]) {
    let args = if error != 0 { &[][..] } else { args };
    let h = abi::out_header(unique, error, args.len());
    let iov = [
        libc::iovec {
            iov_base: h.as_ptr() as *mut _,
            iov_len: h.len(),
        },
        libc::iovec {
            iov_base: args.as_ptr() as *mut _,
            iov_len: args.len(),
        },
    ];
    // SAFETY: both iovecs point into live buffers of their stated lengths.
    let r = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), 2) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // ENOENT: the request was interrupted and is gone; ENODEV: unmounted.
        if !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV)) {
            tracing::error!(error = %e, "capture: replying on /dev/fuse");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_grants_uring_only_when_offered_and_wanted() {
        let mut body = Out::default()
            .u32(7)
            .u32(45)
            .u32(128 << 10)
            .u32(abi::INIT_EXT | abi::ASYNC_DIO)
            .u32(abi::OVER_IO_URING2)
            .zeros(44)
            .0;
        let (reply, granted) = init_reply(&body, true);
        assert!(granted);
        assert_eq!(reply.len(), 64, "struct fuse_init_out");
        assert_eq!(abi::u32_at(&reply, 4), abi::KERNEL_MINOR);
        assert_eq!(abi::u32_at(&reply, 20), MAX_WRITE);
        assert_eq!(abi::u32_at(&reply, 32), abi::OVER_IO_URING2);
        assert!(!init_reply(&body, false).1, "not asked for");
        body[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(!init_reply(&body, true).1, "not offered");
    }
}
