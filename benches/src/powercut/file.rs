//! One regular file of the power-cut file system: its live bytes (what readers see now) and its
//! durable bytes (what survives a power cut), each a file in the backing directory, and the
//! ranges written since the last fsync.
//!
//! A write goes to the live file and marks its range dirty; fsync or fdatasync copies the dirty
//! ranges (and the size) to the durable file; a power cut copies them back the other way. Both
//! cost the bytes written since the last sync, never the whole file. Runs of zeros are punched as
//! holes, so sparse files (segments, overlays, disk images) stay sparse and SEEK_DATA still means
//! something after a sync or a cut.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::ranges::Ranges;

/// Copy granularity; an all-zero chunk is punched rather than written.
const CHUNK: u64 = 64 << 10;

pub struct FileData {
    live: File,
    live_path: PathBuf,
    durable_path: PathBuf,
    dirty: Ranges,
}

impl FileData {
    /// A new empty file, inode `ino`: `ino.live` and `ino.durable` in `backing`.
    pub fn create(backing: &Path, ino: u64) -> io::Result<FileData> {
        let live_path = backing.join(format!("{ino}.live"));
        let durable_path = backing.join(format!("{ino}.durable"));
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(p)
        };
        drop(open(&durable_path)?);
        let live = open(&live_path)?;
        Ok(FileData {
            live,
            live_path,
            durable_path,
            dirty: Ranges::default(),
        })
    }

    pub fn size(&self) -> io::Result<u64> {
        Ok(self.live.metadata()?.len())
    }

    /// 512-byte blocks allocated to the live bytes.
    pub fn blocks(&self) -> io::Result<u64> {
        Ok(self.live.metadata()?.blocks())
    }

    /// Bytes written (or truncated, punched) since the last sync.
    pub fn unsynced_bytes(&self) -> u64 {
        self.dirty.bytes()
    }

    pub fn read(&self, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let len = self.size()?;
        let end = offset.saturating_add(u64::from(size)).min(len);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        self.live.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.live.write_all_at(data, offset)?;
        self.dirty.insert(offset, offset + data.len() as u64);
        Ok(())
    }

    /// ftruncate: what is cut off is dirty too (extending again must read zeros, and a power
    /// cut must bring the old bytes back).
    pub fn truncate(&mut self, size: u64) -> io::Result<()> {
        let old = self.size()?;
        self.live.set_len(size)?;
        self.dirty.insert(size.min(old), size.max(old));
        Ok(())
    }

    /// fallocate with the caller's mode (preallocate, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE). A
    /// preallocation changes no bytes; the others dirty their range, and a size change is
    /// undone by a cut like any other.
    pub fn fallocate(&mut self, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        let old = self.size()?;
        // SAFETY: fallocate on a descriptor this struct owns, with plain integer arguments.
        let r = unsafe { libc::fallocate(self.live.as_raw_fd(), mode, offset as i64, len as i64) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let changes_bytes = mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0;
        if changes_bytes {
            self.dirty.insert(offset, offset.saturating_add(len));
        }
        let new = self.size()?;
        self.dirty.insert(old.min(new), old.max(new));
        Ok(())
    }

    /// lseek on the live bytes (SEEK_DATA and SEEK_HOLE are what callers use).
    pub fn lseek(&self, offset: i64, whence: i32) -> io::Result<i64> {
        // SAFETY: lseek on a descriptor this struct owns; reads and writes use pread/pwrite,
        // which ignore the file position.
        let r = unsafe { libc::lseek(self.live.as_raw_fd(), offset, whence) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }

    /// fsync/fdatasync: the live bytes and size become the durable ones.
    pub fn sync(&mut self) -> io::Result<()> {
        let durable = OpenOptions::new().write(true).open(&self.durable_path)?;
        let len = self.size()?;
        durable.set_len(len)?;
        for (start, end) in self.dirty.iter() {
            copy_range(&self.live, &durable, start, end.min(len))?;
        }
        self.dirty.clear();
        Ok(())
    }

    /// The power cut: the durable bytes and size become the live ones again. Returns the bytes
    /// that were dropped.
    pub fn roll_back(&mut self) -> io::Result<u64> {
        let dropped = self.dirty.bytes();
        let durable = File::open(&self.durable_path)?;
        let len = durable.metadata()?.len();
        self.live.set_len(len)?;
        for (start, end) in self.dirty.iter() {
            copy_range(&durable, &self.live, start, end.min(len))?;
        }
        self.dirty.clear();
        Ok(dropped)
    }

    /// Deletes both backing files (the inode is gone from every tree).
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.live_path)?;
        std::fs::remove_file(&self.durable_path)
    }
}

/// Copies `[start, end)` from `from` to `to` (both long enough already), punching holes where
/// `from` reads as zeros.
fn copy_range(from: &File, to: &File, start: u64, end: u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = start;
    while pos < end {
        let n = (end - pos).min(CHUNK) as usize;
        from.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().all(|&b| b == 0) {
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            // SAFETY: fallocate on a descriptor the caller owns, with plain integer arguments.
            let r = unsafe { libc::fallocate(to.as_raw_fd(), mode, pos as i64, n as i64) };
            if r != 0 {
                // Without hole punching (some file systems), zeros written are as good.
                to.write_all_at(&buf[..n], pos)?;
            }
        } else {
            to.write_all_at(&buf[..n], pos)?;
        }
        pos += n as u64;
    }
    Ok(())
}
