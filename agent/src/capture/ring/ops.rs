//! What each FUSE request to the capture files asks, decided the same way for both transports
//! (the io_uring queues and the `/dev/fuse` reader): small replies are built here; the data
//! operations (read, write, sync, zeroing) are returned for the transport to carry out.
//!
//! The file system is the one [`super::super::fuse`] serves through fuser: a root directory with
//! one fixed-size file per disk, opened in direct-IO mode with parallel direct writes.

use std::sync::Arc;
use std::time::SystemTime;

use super::abi::{self, op, Attr, InHeader, Out};
use crate::capture::Capture;
use crate::error::Error;

/// Attributes never change (sizes are fixed), so the kernel may cache them long.
const TTL_SECS: u64 = 60;
const ROOT: u64 = 1;
/// Disk i is inode FIRST_DISK + i.
const FIRST_DISK: u64 = 2;

/// A request's data operation, for the transport to do.
#[derive(Debug)]
pub enum Action {
    /// Reply now: 0 or a negative errno, and the reply's argument bytes.
    Reply(i32, Vec<u8>),
    /// No reply (FORGET, INTERRUPT).
    Nothing,
    /// Write the request's payload (`len` bytes) at `offset`.
    Write {
        disk: usize,
        offset: u64,
        len: usize,
    },
    /// Read `len` bytes (already cut at the end of the disk) at `offset`.
    Read {
        disk: usize,
        offset: u64,
        len: usize,
    },
    /// fdatasync the backing disk.
    Sync { disk: usize },
    /// Zero (or punch) a range, recorded as zero records.
    Zero {
        disk: usize,
        offset: u64,
        len: u64,
        punch: bool,
    },
}

/// The capture files' namespace and attributes.
pub struct Files {
    pub capture: Arc<Capture>,
    time: u64,
    uid: u32,
    gid: u32,
}

fn errno(e: i32) -> Action {
    Action::Reply(-e, Vec::new())
}

/// The errno the workload sees for a failed capture operation; logs it (a refused write after
/// a drain or fence quietly: those are logged once where they happen).
pub fn error_errno(e: &Error) -> i32 {
    if let Error::ReadOnly(_) = e {
        tracing::debug!(error = %e, "capture: write refused");
        return libc::EROFS;
    }
    tracing::error!(error = %e, "capture: request failed");
    match e {
        Error::DiskIo { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
    }
}

impl Files {
    pub fn new(capture: Arc<Capture>) -> Files {
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Files {
            capture,
            time,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    fn disk_of(&self, ino: u64) -> Option<usize> {
        let i = ino.checked_sub(FIRST_DISK)? as usize;
        (i < self.capture.disks.len()).then_some(i)
    }

    fn attr(&self, ino: u64) -> Option<Attr> {
        let (mode, size, nlink) = if ino == ROOT {
            (libc::S_IFDIR | 0o755, 0, 2)
        } else {
            let d = self.disk_of(ino)?;
            (libc::S_IFREG | 0o600, self.capture.disks[d].size_bytes, 1)
        };
        Some(Attr {
            ino,
            size,
            mode,
            nlink,
            uid: self.uid,
            gid: self.gid,
            time: self.time,
        })
    }

    fn attr_out(&self, ino: u64) -> Action {
        match self.attr(ino) {
            // struct fuse_attr_out: attr_valid, attr_valid_nsec, dummy, attr.
            Some(a) => Action::Reply(0, a.put(Out::default().u64(TTL_SECS).u32(0).u32(0)).0),
            None => errno(libc::ENOENT),
        }
    }

    /// Decides request `h`: `arg` is its fixed per-opcode struct (`in_args[0]`), `extra` what
    /// follows it (a write's data, a name).
    pub fn decide(&self, h: &InHeader, arg: &[u8], extra: &[u8]) -> Action {
        match h.opcode {
            op::LOOKUP => self.lookup(h.nodeid, if extra.is_empty() { arg } else { extra }),
            op::GETATTR => self.attr_out(h.nodeid),
            op::SETATTR => {
                // Sizes are fixed: truncating to the current size (loop does) is fine,
                // anything else is refused; mode, owner and time changes are ignored.
                let Some(a) = self.attr(h.nodeid) else {
                    return errno(libc::ENOENT);
                };
                if abi::u32_at(arg, 0) & abi::FATTR_SIZE != 0 && abi::u64_at(arg, 16) != a.size {
                    return errno(libc::EPERM);
                }
                self.attr_out(h.nodeid)
            }
            op::OPEN => match self.disk_of(h.nodeid) {
                Some(d) => Action::Reply(
                    0,
                    Out::default()
                        .u64(d as u64)
                        .u32(abi::FOPEN_DIRECT_IO | abi::FOPEN_PARALLEL_DIRECT_WRITES)
                        .u32(0)
                        .0,
                ),
                None if h.nodeid == ROOT => errno(libc::EISDIR),
                None => errno(libc::ENOENT),
            },
            op::OPENDIR if h.nodeid == ROOT => {
                Action::Reply(0, Out::default().u64(0).u32(0).u32(0).0)
            }
            op::OPENDIR => errno(libc::ENOTDIR),
            op::READ => {
                let Some(d) = self.disk_of(h.nodeid) else {
                    return errno(libc::ENOENT);
                };
                let (offset, size) = (abi::u64_at(arg, 8), abi::u32_at(arg, 16));
                let end = self.capture.disks[d].size_bytes;
                let len = u64::from(size).min(end.saturating_sub(offset)) as usize;
                Action::Read {
                    disk: d,
                    offset,
                    len,
                }
            }
            op::WRITE => {
                let Some(d) = self.disk_of(h.nodeid) else {
                    return errno(libc::ENOENT);
                };
                let (offset, size) = (abi::u64_at(arg, 8), abi::u32_at(arg, 16) as usize);
                if size > extra.len() {
                    tracing::error!(size, got = extra.len(), "capture: short FUSE write request");
                    return errno(libc::EIO);
                }
                Action::Write {
                    disk: d,
                    offset,
                    len: size,
                }
            }
            op::FSYNC | op::FLUSH => match self.disk_of(h.nodeid) {
                Some(d) => Action::Sync { disk: d },
                None => Action::Reply(0, Vec::new()),
            },
            op::FALLOCATE => self.fallocate(h.nodeid, arg),
            op::STATFS => {
                // struct fuse_kstatfs: nothing to tell but the block size and name length.
                let o = Out::default()
                    .zeros(40)
                    .u32(4096)
                    .u32(255)
                    .u32(4096)
                    .zeros(28);
                Action::Reply(0, o.0)
            }
            op::READDIR => self.readdir(h.nodeid, abi::u64_at(arg, 8), abi::u32_at(arg, 16)),
            op::RELEASE | op::RELEASEDIR | op::FSYNCDIR | op::ACCESS => {
                Action::Reply(0, Vec::new())
            }
            op::FORGET | op::BATCH_FORGET | op::INTERRUPT => Action::Nothing,
            op::DESTROY => Action::Reply(0, Vec::new()),
            _ => errno(libc::ENOSYS),
        }
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Action {
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if parent != ROOT {
            return errno(libc::ENOENT);
        }
        let Some(i) = self
            .capture
            .disks
            .iter()
            .position(|d| d.name.as_bytes() == name)
        else {
            return errno(libc::ENOENT);
        };
        let ino = FIRST_DISK + i as u64;
        let a = self.attr(ino).expect("disk inode");
        // struct fuse_entry_out: nodeid, generation, entry_valid, attr_valid, two nsecs, attr.
        let o = Out::default()
            .u64(ino)
            .u64(0)
            .u64(TTL_SECS)
            .u64(TTL_SECS)
            .u32(0)
            .u32(0);
        Action::Reply(0, a.put(o).0)
    }

    fn fallocate(&self, ino: u64, arg: &[u8]) -> Action {
        let Some(d) = self.disk_of(ino) else {
            return errno(libc::ENOENT);
        };
        let (offset, length, mode) = (
            abi::u64_at(arg, 8),
            abi::u64_at(arg, 16),
            abi::u32_at(arg, 24) as i32,
        );
        let size = self.capture.disks[d].size_bytes;
        let end = offset.saturating_add(length);
        let punch = match mode & !libc::FALLOC_FL_KEEP_SIZE {
            // Plain allocation inside a fixed-size disk changes nothing.
            0 if end <= size => return Action::Reply(0, Vec::new()),
            0 => return errno(libc::ENOSPC),
            libc::FALLOC_FL_PUNCH_HOLE => true,
            libc::FALLOC_FL_ZERO_RANGE => false,
            _ => return errno(libc::EOPNOTSUPP),
        };
        let end = end.min(size);
        if offset >= end {
            return Action::Reply(0, Vec::new());
        }
        Action::Zero {
            disk: d,
            offset,
            len: end - offset,
            punch,
        }
    }

    fn readdir(&self, ino: u64, offset: u64, size: u32) -> Action {
        if ino != ROOT {
            return errno(libc::ENOTDIR);
        }
        let dt_dir = u32::from(libc::DT_DIR);
        let dt_reg = u32::from(libc::DT_REG);
        let all = [
            (ROOT, dt_dir, ".".as_bytes()),
            (ROOT, dt_dir, "..".as_bytes()),
        ]
        .into_iter()
        .chain(
            self.capture
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| (FIRST_DISK + i as u64, dt_reg, d.name.as_bytes())),
        );
        let mut out = Vec::new();
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            // struct fuse_dirent: ino, off (of the next entry), namelen, type, name, padding.
            let len = (24 + name.len()).next_multiple_of(8);
            if out.len() + len > size as usize {
                break;
            }
            let mut o = Out(std::mem::take(&mut out))
                .u64(ino)
                .u64(i as u64 + 1)
                .u32(name.len() as u32)
                .u32(kind);
            o.0.extend_from_slice(name);
            o.0.resize(o.0.len().next_multiple_of(8), 0);
            out = o.0;
        }
        Action::Reply(0, out)
    }
}
