//! IO engines for the journal writer: io_uring, or plain synchronous syscalls.
//!
//! Both run the same writer logic; the engine only decides how a set of positioned writes and the
//! fdatasyncs that make them durable reach the kernel. Tests run both.
//!
//! The writer's other IO (a sealed segment's footer, the directory fsync that makes a new
//! segment's name durable) is small and rare, so both engines do it with plain syscalls; it goes
//! through the engine all the same, so that a test engine can fail exactly those steps.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rewind_linux::aligned::AlignedBuf;

mod sync;
mod uring;

pub(crate) use sync::SyncEngine;
pub(crate) use uring::UringEngine;

/// One positioned write of a whole buffer.
pub(crate) struct WriteOp<'a> {
    pub(crate) fd: RawFd,
    pub(crate) buf: &'a AlignedBuf,
    pub(crate) offset: u64,
}

pub(crate) trait IoEngine: Send {
    /// Write every buffer completely at its offset. On error, no write is still in flight when
    /// this returns (the buffers may be reused or freed).
    fn write_all(&mut self, ops: &[WriteOp<'_>]) -> io::Result<()>;
    /// fdatasync each file; all must succeed.
    fn sync_all(&mut self, fds: &[RawFd]) -> io::Result<()>;
    /// Write all of `bytes` at `offset` of `file` (a sealed segment's footer).
    fn write_at(&mut self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(bytes, offset)
    }
    /// fsync a directory, so that the entries created or renamed in it are durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        rewind_linux::atomic::sync_dir(dir)
    }
    fn name(&self) -> &'static str;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum EngineKind {
    Uring,
    Sync,
}

/// Build the chosen engine. io_uring is probed for the opcodes we use; if the kernel refuses, the
/// error says so (the caller may pick `sync` explicitly).
pub(crate) fn make_engine(kind: EngineKind) -> io::Result<Box<dyn IoEngine>> {
    Ok(match kind {
        EngineKind::Uring => Box::new(UringEngine::new(256)?),
        EngineKind::Sync => Box::new(SyncEngine),
    })
}
