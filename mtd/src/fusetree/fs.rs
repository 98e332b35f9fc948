//! The `fuser::Filesystem` of the view tree.
//!
//! ```text
//! /GROUP/DISK/latest.img          read-only, the latest point when opened
//! /GROUP/DISK/at/SPEC.img         read-only; any point spec resolves on lookup, `tag:NAME` and
//!                                 `latest-app-consistent` are listed
//! /GROUP/DISK/overlays/NAME.img   read-write overlays over this disk
//! ```
//!
//! Every open makes a fresh `Volume` (frozen at its point), so reads go through the same path as
//! NBD. Methods run on fuser's threads and do blocking IO there; all state is behind locks.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

mod attrs;
mod layout;

use super::catalog::Catalog;
use super::errno::errno;
use super::handles::{Handle, Handles};
use super::inodes::{Image, Inodes, Node};
use crate::store::StoreError;
use crate::views::exports::Volume;
use crate::views::view::Allocation;

/// How long the kernel may cache attributes and names (new points and groups show up within it).
const TTL: Duration = Duration::from_secs(1);
/// Overlay names are not cached at all: an overlay made or deleted a moment ago is seen as such.
const OVERLAY_ENTRY_TTL: Duration = Duration::ZERO;
/// Largest write and read the kernel sends (it caps FUSE requests at 1 MiB anyway).
const MAX_IO: u32 = 1 << 20;
/// In-flight background (async direct IO) requests the kernel may queue to us.
const MAX_BACKGROUND: u16 = 64;
/// SEEK_DATA / SEEK_HOLE scan the allocation map this much at a time.
const SEEK_WINDOW: u64 = 1 << 30;

const FALLOC_FL_KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
const FALLOC_FL_PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
const FALLOC_FL_ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;

thread_local! {
    /// Each fuser thread reads into its own buffer, reused across requests.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub struct TreeFs {
    catalog: Catalog,
    inodes: Inodes,
    handles: Handles,
    uid: u32,
    gid: u32,
    /// Time shown where nothing better is known (the root, groups without points).
    mounted: SystemTime,
}

impl TreeFs {
    /// `gid`: the access group, which may read the tree (and write overlays); nobody else may
    /// (the kernel enforces the modes: the tree is mounted with `default_permissions`).
    pub fn new(catalog: Catalog, gid: u32) -> TreeFs {
        TreeFs {
            catalog,
            inodes: Inodes::new(),
            handles: Handles::default(),
            uid: nix::unistd::geteuid().as_raw(),
            gid,
            mounted: SystemTime::now(),
        }
    }
}

fn throwaway(v: &Volume) -> bool {
    matches!(v, Volume::Overlay(o) if o.meta.throwaway)
}

impl TreeFs {
    fn handle(&self, fh: FileHandle) -> Result<std::sync::Arc<Handle>, Errno> {
        self.handles.get(fh.0).ok_or(Errno::EBADF)
    }

    fn io_error(&self, op: &str, ino: INodeNo, e: &StoreError) -> Errno {
        let what = self
            .inodes
            .node(ino.0)
            .and_then(|n| n.export_name())
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("inode {ino}"));
        tracing::warn!(export = %what, op, error = %e, "view tree IO failed");
        errno(e)
    }

    /// SEEK_DATA / SEEK_HOLE over the volume's allocation map.
    fn seek(&self, volume: &Volume, offset: i64, data: bool) -> Result<i64, Errno> {
        let size = volume.size_bytes();
        let start = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
        if start >= size {
            return Err(Errno::ENXIO);
        }
        let mut pos = start;
        while pos < size {
            let len = SEEK_WINDOW.min(size - pos);
            let extents = volume.extents(pos, len).map_err(|e| errno(&e))?;
            let want = if data {
                Allocation::Data
            } else {
                Allocation::Zero
            };
            if let Some(e) = extents.iter().find(|e| e.allocation == want) {
                return Ok(e.offset.max(start) as i64);
            }
            pos += len;
        }
        if data {
            Err(Errno::ENXIO)
        } else {
            Ok(size as i64)
        }
    }
}

impl Filesystem for TreeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Loop devices in direct-io mode send many requests at once: let them reach our threads
        // in parallel (async direct IO), with 1 MiB writes.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO) {
            tracing::warn!(
                ?missing,
                "view tree: kernel lacks async direct IO; loop devices over it will be slower"
            );
        }
        if let Err(nearest) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(nearest);
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // Files are opened FOPEN_DIRECT_IO, which refuses shared mmap (ENODEV) unless the kernel
        // may map them anyway (protocol 7.39+). Mapped pages are read and written back through
        // the same read and write handlers, and the kernel writes dirty pages back before a
        // direct read or write of the same range, so the file stays coherent for its users.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP) {
            tracing::warn!(
                ?missing,
                "view tree: kernel lacks FUSE_DIRECT_IO_ALLOW_MMAP; view files cannot be mapped"
            );
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(parent) = self.inodes.node(parent.0) else {
            return reply.error(Errno::ENOENT);
        };
        let child = match self.child(&parent, name) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        // Check it exists before numbering it: a failed lookup leaves no inode behind.
        let attr = match self.attr_of(0, &child, None) {
            Ok(a) => a,
            Err(e) => return reply.error(e),
        };
        let entry_ttl = match child {
            Node::Image(_, Image::Overlay(_)) => OVERLAY_ENTRY_TTL,
            _ => TTL,
        };
        let ino = self.inodes.lookup(child);
        let attr = FileAttr {
            ino: INodeNo(ino),
            ..attr
        };
        reply.entry_with_ttls(&TTL, &entry_ttl, &attr, Generation(0));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(node) = self.inodes.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let open = fh.and_then(|fh| self.handles.get(fh.0));
        match self.attr_of(ino.0, &node, open.as_deref()) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    /// Sizes are fixed: a truncate to the current size (loop and qemu do that) is fine, any other
    /// is refused. Mode, owner and time changes are ignored.
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
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let Some(node) = self.inodes.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let open = fh.and_then(|fh| self.handles.get(fh.0));
        let attr = match self.attr_of(ino.0, &node, open.as_deref()) {
            Ok(a) => a,
            Err(e) => return reply.error(e),
        };
        if let Some(size) = size {
            if node.is_dir() {
                return reply.error(Errno::EISDIR);
            }
            if size != attr.size {
                tracing::info!(export = ?node.export_name().map(|n| n.to_string()), size, "view tree: refused to change the size of an image");
                return reply.error(Errno::EPERM);
            }
        }
        reply.attr(&TTL, &attr);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(node) = self.inodes.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let Some(name) = node.export_name() else {
            return reply.error(Errno::EISDIR);
        };
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        if write && !matches!(node, Node::Image(_, Image::Overlay(_))) {
            return reply.error(Errno::EROFS);
        }
        match self.catalog.exports.open_parsed(&name) {
            Ok(volume) => {
                let fh = self.handles.insert(volume, write);
                tracing::debug!(export = %name, fh, write, "view tree: opened");
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES,
                );
            }
            Err(e) => {
                tracing::info!(export = %name, error = %e, "view tree: cannot open");
                reply.error(match e {
                    // An overlay deleted since the lookup.
                    StoreError::Invalid { .. } => Errno::ENOENT,
                    e => errno(&e),
                });
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let disk = h.volume.size_bytes();
        if offset >= disk || size == 0 {
            return reply.data(&[]);
        }
        let len = (size as u64).min(disk - offset) as usize;
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < len {
                buf.resize(len, 0);
            }
            match h.volume.read_at(&mut buf[..len], offset) {
                Ok(()) => reply.data(&buf[..len]),
                Err(e) => reply.error(self.io_error("read", ino, &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        if !h.write {
            return reply.error(Errno::EBADF);
        }
        let disk = h.volume.size_bytes();
        if data.is_empty() {
            return reply.written(0);
        }
        // Like a block device: nothing past the end, a write across it is cut short.
        if offset >= disk {
            return reply.error(Errno::ENOSPC);
        }
        let n = (data.len() as u64).min(disk - offset) as usize;
        match h.volume.write_at(&data[..n], offset) {
            Ok(()) => reply.written(n as u32),
            Err(e) => reply.error(self.io_error("write", ino, &e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.handle(fh) {
            Ok(h) if h.write => match h.volume.flush() {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.io_error("flush", ino, &e)),
            },
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.handle(fh) {
            Ok(h) => match h.volume.flush() {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.io_error("fsync", ino, &e)),
            },
            Err(e) => reply.error(e),
        }
    }

    /// Drops the handle's volume (unpinning its point). A writable one is flushed first (a loop
    /// device lets go of its file without a flush), unless it is a throwaway overlay, which is
    /// deleted next: its user is waiting for that.
    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.handles.remove(fh.0) {
            Some(h) if h.write && !throwaway(&h.volume) => match h.volume.flush() {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.io_error("flush at close", ino, &e)),
            },
            _ => reply.ok(),
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
        let Some(node) = self.inodes.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let entries = match self.entries(&node) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let parent = self.inodes.ino(&node.parent());
        let all = [
            (ino.0, FileType::Directory, ".".to_string()),
            (parent, FileType::Directory, "..".to_string()),
        ]
        .into_iter()
        .chain(entries.into_iter().map(|(child, name)| {
            let kind = if child.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            (self.inodes.ino(&child), kind, name)
        }));
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    /// Punching a hole or zeroing a range of an overlay zeroes it; plain allocation inside the
    /// image is a no-op (the size never changes).
    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        if !h.write {
            return reply.error(Errno::EBADF);
        }
        let disk = h.volume.size_bytes();
        let end = offset.saturating_add(length);
        match mode & !FALLOC_FL_KEEP_SIZE {
            0 if end <= disk => reply.ok(),
            0 => reply.error(Errno::ENOSPC),
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE => {
                let end = end.min(disk);
                if offset >= end {
                    return reply.ok();
                }
                match h.volume.write_zeroes(offset, end - offset) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(self.io_error("zero range", ino, &e)),
                }
            }
            _ => reply.error(Errno::EOPNOTSUPP),
        }
    }

    /// No extended attributes (`ls -l` asks for ACLs and security labels).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let r = match whence {
            libc::SEEK_DATA => self.seek(&h.volume, offset, true),
            libc::SEEK_HOLE => self.seek(&h.volume, offset, false),
            _ => Err(Errno::EINVAL),
        };
        match r {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}
