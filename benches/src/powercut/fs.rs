//! The FUSE face of the power-cut file system: every request becomes one [`State`] call under
//! one lock, so requests are applied one at a time, in the order the kernel sends them.
//!
//! Entries and attributes are never cached (TTL zero) and every file is opened in direct-IO
//! mode: the kernel's page cache would otherwise keep serving bytes that a cut took back, and
//! every write must reach us to be counted as unsynced. O_DIRECT opens work (the io_uring
//! writer of `rewind-mtd` and the agent's backing disk use them); mmap of these files does not,
//! and nothing in the daemons' data directories maps files.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::state::{Stat, State};

const TTL: Duration = Duration::ZERO;

pub struct PowercutFs {
    pub state: Arc<Mutex<State>>,
    /// The state's epoch when this session was mounted: after a cut, a session still serving a
    /// lazily detached mount answers EIO (its callers died with the power).
    pub epoch: u64,
}

fn attr(s: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(s.ino),
        size: s.size,
        blocks: s.blocks,
        atime: s.mtime,
        mtime: s.mtime,
        ctime: s.mtime,
        crtime: s.mtime,
        kind: if s.dir {
            FileType::Directory
        } else if s.socket {
            FileType::Socket
        } else {
            FileType::RegularFile
        },
        perm: s.mode as u16,
        nlink: if s.dir { 2 } else { 1 },
        uid: s.uid,
        gid: s.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn fuse_errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

impl PowercutFs {
    fn lock(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.epoch != self.epoch {
            return Err(Errno::EIO);
        }
        Ok(s)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> super::state::Result<T>) -> Result<T, Errno> {
        f(&mut *self.lock()?).map_err(fuse_errno)
    }

    fn empty(&self, reply: ReplyEmpty, f: impl FnOnce(&mut State) -> super::state::Result<()>) {
        match self.with(f) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn entry(&self, reply: ReplyEntry, f: impl FnOnce(&mut State) -> super::state::Result<Stat>) {
        match self.with(f) {
            Ok(s) => reply.entry(&TTL, &attr(&s), Generation(0)),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for PowercutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry(reply, |s| s.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.with(|s| s.stat(ino.0)) {
            Ok(s) => reply.attr(&TTL, &attr(&s)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.with(|s| {
            if let Some(size) = size {
                s.truncate(ino.0, size)?;
            }
            s.set_owner_mode(ino.0, mode, uid, gid)?;
            s.stat(ino.0)
        });
        match r {
            Ok(s) => reply.attr(&TTL, &attr(&s)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        self.entry(reply, |s| s.mkdir(parent.0, name, mode & !umask, uid, gid));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        self.entry(reply, |s| s.mknod(parent.0, name, mode & !umask, uid, gid));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |s| s.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, |s| s.rmdir(parent.0, name));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.empty(reply, |s| {
            s.rename(parent.0, name, newparent.0, newname, noreplace)
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| s.open(ino.0)) {
            Ok(()) => reply.opened(FileHandle(ino.0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let (uid, gid) = (req.uid(), req.gid());
        let r = self.with(|s| {
            let st = s.create(parent.0, name, mode & !umask, uid, gid)?;
            s.open(st.ino)?;
            Ok(st)
        });
        match r {
            Ok(st) => reply.created(
                &TTL,
                &attr(&st),
                Generation(0),
                FileHandle(st.ino),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
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
        match self.with(|s| s.read(ino.0, offset, size)) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
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
        match self.with(|s| s.write(ino.0, offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |s| s.release(ino.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.with(|s| s.fsync(ino.0).map(|()| s.sync_delay));
        match r {
            Ok(delay) => {
                // Outside the lock: writes that arrive now complete before this fsync
                // returns, yet were not covered by it (see `State::sync_delay`).
                std::thread::sleep(delay);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|s| s.readdir(ino.0)) {
            Ok(_) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.with(|s| s.readdir(ino.0)) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let dots = [(ino.0, true, ".".into()), (ino.0, true, "..".into())];
        for (i, (child, dir, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            let kind = if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, |s| s.fsync(ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.with(|s| s.statfs()) {
            Ok(v) => reply.statfs(
                v.blocks(),
                v.blocks_free(),
                v.blocks_available(),
                v.files(),
                v.files_free(),
                v.block_size() as u32,
                255,
                v.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        self.empty(reply, |s| s.stat(ino.0).map(drop));
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
        self.empty(reply, |s| s.fallocate(ino.0, offset, length, mode));
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.with(|s| s.lseek(ino.0, offset, whence)) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}
