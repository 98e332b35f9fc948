//! The capture file system: a directory with one file per protected disk, named after the disk.
//!
//! Files are opened in direct-IO mode with parallel direct writes, and `init` asks for async direct
//! IO and 1 MiB writes: a loop device in direct-io mode then sends its requests in parallel to
//! fuser's threads (PLATFORM.md measured about 5x the IOPS of the defaults). Handlers run
//! concurrently and hold no lock of their own; [`Capture`] orders what must be ordered.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, Session,
    SessionACL, SessionUnmounter, TimeOrNow, WriteFlags,
};

use rewind_linux::fuse_mount;

use super::end_watch::Phase;
use super::Capture;
use crate::error::{Error, Result};

/// Attributes never change (sizes are fixed), so the kernel may cache them long.
const TTL: Duration = Duration::from_secs(60);
const MAX_WRITE: u32 = 1 << 20;
/// Async direct IO requests the kernel may queue to us at once.
const MAX_BACKGROUND: u16 = 64;
const ROOT: u64 = 1;
/// Disk i is inode FIRST_DISK + i.
const FIRST_DISK: u64 = 2;
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

struct CaptureFs {
    capture: Arc<Capture>,
    started: SystemTime,
    uid: u32,
    gid: u32,
}

impl CaptureFs {
    fn disk_of(&self, ino: INodeNo) -> Option<usize> {
        let i = ino.0.checked_sub(FIRST_DISK)? as usize;
        (i < self.capture.disks.len()).then_some(i)
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = if ino == ROOT {
            (FileType::Directory, 0, 0o755, 2)
        } else {
            let d = self.disk_of(INodeNo(ino))?;
            (
                FileType::RegularFile,
                self.capture.disks[d].size_bytes,
                0o600,
                1,
            )
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Logs a failed operation and turns it into the errno the workload sees.
    fn fail(&self, e: &Error) -> Errno {
        errno(e)
    }
}

/// Logs a failed operation and turns it into the errno the workload sees.
fn errno(e: &Error) -> Errno {
    if let Error::ReadOnly(_) = e {
        // Expected after a drain or a fence, possibly for every write of a busy workload:
        // the drain and the fence are logged once, where they happen.
        tracing::debug!(error = %e, "capture: write refused");
        return Errno::EROFS;
    }
    tracing::error!(error = %e, "capture: request failed");
    match e {
        Error::DiskIo { source, .. } => Errno::from_i32(source.raw_os_error().unwrap_or(libc::EIO)),
        Error::Stopping => Errno::EIO,
        _ => Errno::EIO,
    }
}

impl Filesystem for CaptureFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO) {
            tracing::warn!(
                ?missing,
                "capture: the kernel lacks FUSE async direct IO; writes will be slower"
            );
        }
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 != ROOT {
            return reply.error(Errno::ENOENT);
        }
        let Some(i) = self
            .capture
            .disks
            .iter()
            .position(|d| OsStr::new(&d.name) == name)
        else {
            return reply.error(Errno::ENOENT);
        };
        let attr = self.attr(FIRST_DISK + i as u64).expect("disk inode");
        reply.entry(&TTL, &attr, Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Sizes are fixed: truncating to the current size (loop does) is fine, anything else is
    /// refused; mode, owner and time changes are ignored.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(attr) = self.attr(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if size.is_some_and(|s| s != attr.size) {
            return reply.error(Errno::EPERM);
        }
        reply.attr(&TTL, &attr);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk_of(ino) {
            Some(d) => reply.opened(
                FileHandle(d as u64),
                FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
            ),
            None if ino.0 == ROOT => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(d) = self.disk_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.capture.read(d, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(self.fail(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(d) = self.disk_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        // The reply travels with the write and is sent once it is on disk and recorded.
        let started = Instant::now();
        self.capture.write_async(
            d,
            offset,
            data,
            Box::new(move |r| {
                crate::metrics::capture::LATENCY.observe(started.elapsed());
                match r {
                    Ok(n) => reply.written(n),
                    Err(e) => reply.error(errno(&e)),
                }
            }),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(d) = self.disk_of(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let size = self.capture.disks[d].size_bytes;
        let end = offset.saturating_add(length);
        let punch = match mode & !libc::FALLOC_FL_KEEP_SIZE {
            // Plain allocation inside a fixed-size disk changes nothing.
            0 if end <= size => return reply.ok(),
            0 => return reply.error(Errno::ENOSPC),
            libc::FALLOC_FL_PUNCH_HOLE => true,
            libc::FALLOC_FL_ZERO_RANGE => false,
            _ => return reply.error(Errno::EOPNOTSUPP),
        };
        let end = end.min(size);
        if offset >= end {
            return reply.ok();
        }
        match self.capture.zero(d, offset, end - offset, punch) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(&e)),
        }
    }

    /// No extended attributes. ENOSYS (quietly) makes the kernel stop asking, which the
    /// default implementation also answers but with a warning per request.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let all = [
            (ROOT, FileType::Directory, ".".to_string()),
            (ROOT, FileType::Directory, "..".to_string()),
        ]
        .into_iter()
        .chain(
            self.capture
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| (FIRST_DISK + i as u64, FileType::RegularFile, d.name.clone())),
        );
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

impl CaptureFs {
    fn sync(&self, ino: INodeNo, reply: ReplyEmpty) {
        let Some(d) = self.disk_of(ino) else {
            return reply.ok();
        };
        match self.capture.flush(d) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(&e)),
        }
    }
}

/// The mounted capture file system; unmounted when dropped.
pub struct CaptureMount {
    dir: PathBuf,
    /// Whether the session's end loses the capture ([`super::end_watch`]).
    phase: Phase,
    unmounter: Option<SessionUnmounter>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl CaptureMount {
    /// Mounts the capture files at `dir` (created if missing) served by `threads` threads.
    pub fn mount(capture: Arc<Capture>, dir: &Path, threads: usize) -> Result<CaptureMount> {
        // A killed agent leaves a dead mount (ENOTCONN) here: detach it first.
        fuse_mount::clear_dead(dir, "capture").map_err(|e| Error::Mount {
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        std::fs::create_dir_all(dir).map_err(Error::path("creating the mount directory", dir))?;
        let fs = CaptureFs {
            capture,
            started: SystemTime::now(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("rewind-agent".into()),
            MountOption::DefaultPermissions,
            MountOption::NoExec,
        ];
        config.acl = SessionACL::All;
        config.n_threads = Some(threads.max(1));
        config.clone_fd = true;
        let mut session = Session::new(fs, dir, &config).map_err(|source| Error::Mount {
            path: dir.to_path_buf(),
            source,
        })?;
        let unmounter = session.unmount_callable();
        let phase = Phase::default();
        let watch = phase.watch("capture-fuse", dir);
        let thread = std::thread::Builder::new()
            .name("capture-fuse".into())
            .spawn(move || {
                let _watch = watch;
                session.run()
            })
            .map_err(Error::path("starting the FUSE threads for", dir))?;
        phase.serving();
        Ok(CaptureMount {
            dir: dir.to_path_buf(),
            phase,
            unmounter: Some(unmounter),
            thread: Some(thread),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CaptureMount {
    /// Unmounts; while something still uses the files (a loop device the workload keeps
    /// mounted), detaches lazily instead, so that user keeps being served until it lets go.
    fn drop(&mut self) {
        let Some(mut unmounter) = self.unmounter.take() else {
            return;
        };
        let dir = self.dir.display().to_string();
        // Before the unmount: the session may end before it returns.
        self.phase.closing();
        match unmounter.unmount() {
            Ok(()) => {
                if let Some(t) = self.thread.take() {
                    let t0 = Instant::now();
                    while !t.is_finished() && t0.elapsed() < JOIN_TIMEOUT {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if t.is_finished() {
                        let _ = t.join();
                    } else {
                        tracing::warn!(dir, "capture unmounted, but its threads did not stop");
                    }
                }
                tracing::info!(dir, "capture file system unmounted");
            }
            Err(e) => {
                tracing::warn!(dir, error = %e, "capture file system busy; detaching it lazily");
                let _ = fuse_mount::detach(&self.dir);
            }
        }
    }
}
