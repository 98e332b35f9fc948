//! The synchronous engine: pwrite and fdatasync, one call at a time.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use super::{IoEngine, WriteOp};

pub(crate) struct SyncEngine;

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the writer keeps every file it passes here open for the duration of the call; the
    // borrowed fd never escapes this module's calls.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl IoEngine for SyncEngine {
    fn write_all(&mut self, ops: &[WriteOp<'_>]) -> io::Result<()> {
        for op in ops {
            let mut done = 0usize;
            while done < op.buf.len() {
                let n = nix::sys::uio::pwrite(
                    borrow(op.fd),
                    &op.buf[done..],
                    (op.offset + done as u64) as i64,
                )
                .map_err(io::Error::from)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "pwrite wrote nothing",
                    ));
                }
                done += n;
            }
        }
        Ok(())
    }

    fn sync_all(&mut self, fds: &[RawFd]) -> io::Result<()> {
        for &fd in fds {
            nix::unistd::fdatasync(fd).map_err(io::Error::from)?;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sync"
    }
}
