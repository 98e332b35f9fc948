//! A protected disk's backing device or image file, opened for O_DIRECT IO.
//!
//! O_DIRECT keeps the capture path off the page cache of the file it serves (the loop device above
//! us must never wait on writeback that needs us). Requests that O_DIRECT refuses (EINVAL: not
//! aligned to the device's logical block) go through a second, buffered descriptor; the kernel
//! flushes such dirty pages before any later direct IO of the same range, so both views agree.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use rewind_formats::SECTOR;

use crate::error::{Error, Result};

pub struct Backing {
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub is_block_device: bool,
    direct: File,
    buffered: File,
}

impl Backing {
    /// Opens `path` read-write, direct and buffered. Its size must be a non-zero multiple of
    /// 512 bytes (a sector: records are counted in them).
    pub fn open(name: &str, path: &Path) -> Result<Backing> {
        let open_err = |op| Error::path(op, path);
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(open_err("opening (O_DIRECT) the backing disk"))?;
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(open_err("opening the backing disk"))?;
        let meta = direct
            .metadata()
            .map_err(open_err("reading the metadata of"))?;
        let is_block_device = meta.file_type().is_block_device();
        if !is_block_device && !meta.is_file() {
            return Err(Error::Config {
                what: "--disk",
                why: format!(
                    "disk {name}: {} is neither a block device nor a regular file",
                    path.display()
                ),
            });
        }
        // Seeking to the end gives a block device's size as well as a file's.
        let size_bytes = (&direct)
            .seek(SeekFrom::End(0))
            .map_err(open_err("finding the size of"))?;
        if size_bytes == 0 || size_bytes % SECTOR != 0 {
            return Err(Error::Config {
                what: "--disk",
                why: format!(
                    "disk {name}: {} is {size_bytes} bytes; a protected disk is a non-zero \
                     multiple of {SECTOR} bytes",
                    path.display()
                ),
            });
        }
        Ok(Backing {
            name: name.to_string(),
            path: path.to_path_buf(),
            size_bytes,
            is_block_device,
            direct,
            buffered,
        })
    }

    /// The O_DIRECT descriptor (for the io_uring writer); valid while `self` lives.
    pub fn direct_fd(&self) -> std::os::fd::RawFd {
        self.direct.as_raw_fd()
    }

    /// Writes all of `buf` (page-aligned memory) at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        match self.direct.write_all_at(buf, offset) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.buffered.write_all_at(buf, offset)
            }
            r => r,
        }
        .map_err(Error::disk(&self.name, "write", offset))
    }

    /// Reads exactly `buf.len()` bytes (page-aligned memory) at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match self.direct.read_exact_at(buf, offset) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.buffered.read_exact_at(buf, offset)
            }
            r => r,
        }
        .map_err(Error::disk(&self.name, "read", offset))
    }

    /// fdatasync: everything written so far is on stable storage.
    pub fn sync(&self) -> Result<()> {
        self.direct
            .sync_data()
            .map_err(Error::disk(&self.name, "fdatasync", 0))
    }

    /// Makes `[offset, offset + len)` read as zeros: punch a hole (files) or zero the range
    /// (either), via fallocate; block devices accept both modes too.
    pub fn zero(&self, offset: u64, len: u64, punch: bool) -> Result<()> {
        let mode = if punch {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
        };
        // SAFETY: fallocate on a descriptor we own, with plain integer arguments.
        let r =
            unsafe { libc::fallocate(self.direct.as_raw_fd(), mode, offset as i64, len as i64) };
        if r != 0 {
            return Err(Error::disk(&self.name, "fallocate (zero)", offset)(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// The first offset >= `offset` holding data (SEEK_DATA), `None` if only holes remain.
    /// Devices and file systems without SEEK_DATA report everything as data.
    pub fn next_data(&self, offset: u64) -> Option<u64> {
        // SAFETY: lseek on a descriptor we own; only the returned offset is used (reads and
        // writes use pread/pwrite, which ignore the file position).
        let r = unsafe { libc::lseek(self.buffered.as_raw_fd(), offset as i64, libc::SEEK_DATA) };
        if r >= 0 {
            return Some(r as u64);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENXIO) => None,
            _ => Some(offset),
        }
    }

    /// The first hole at or after `offset` (SEEK_HOLE; the end of the disk if none).
    pub fn next_hole(&self, offset: u64) -> u64 {
        // SAFETY: as in next_data.
        let r = unsafe { libc::lseek(self.buffered.as_raw_fd(), offset as i64, libc::SEEK_HOLE) };
        if r >= 0 {
            (r as u64).min(self.size_bytes)
        } else {
            self.size_bytes
        }
    }
}
