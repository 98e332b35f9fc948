//! The disk spool: where captured data goes when the memory queue is full (the target is
//! unreachable or slower than the workload), so the workload keeps its speed and the stream
//! keeps every write, up to the spool's size.
//!
//! A ring in one file (`STATE_DIR/GROUP.spool`). Records enter and leave the queue in seq order,
//! so space is allocated at the tail and freed at the head, FIFO; a record never straddles the
//! end (the unused end is skipped). The spool is not replayed after a crash: the dirty-region
//! map covers everything unacknowledged, so the spool needs no fsync and starts empty.
//!
//! The ring's state lives under the queue's lock ([`crate::stream::queue`]); reads of spooled data by
//! the sender go straight to the file (pread), as a record's bytes are not reused before the
//! record is acknowledged and freed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Shrink the file when the spool empties and it had grown past this.
const SHRINK_ABOVE: u64 = 64 << 20;

pub struct Spool {
    path: PathBuf,
    file: Arc<File>,
    capacity: u64,
    /// Oldest live byte.
    head: u64,
    /// Where the next record goes.
    tail: u64,
    /// Live data has wrapped: it is `[head, end of the last record before the wrap)` then
    /// `[0, tail)`.
    wrapped: bool,
    used: u64,
    /// Highest offset ever written since the file was last shrunk.
    high: u64,
    /// A write failed (the file system is full, say): the spool takes nothing more until empty.
    broken: bool,
}

impl Spool {
    /// Creates (or empties) the spool file.
    /// The file is 0600 and never opened through a symlink: it holds captured writes in plain
    /// text (a spool left by an older version is made 0600 too).
    pub fn create(path: &Path, capacity: u64) -> Result<Spool> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(path)
            .map_err(Error::path("creating the spool", path))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(Error::path("chmod 0600", path))?;
        Ok(Spool {
            path: path.to_path_buf(),
            file: Arc::new(file),
            capacity,
            head: 0,
            tail: 0,
            wrapped: false,
            used: 0,
            high: 0,
            broken: false,
        })
    }

    /// A handle for reading spooled records without the queue's lock.
    pub fn reader(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// A new size (the policy's `spool_mib`; 0 takes nothing more). Records already held stay
    /// where they are, also past a smaller size, until they are freed: the size only says where
    /// new ones may go.
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Where `len` bytes would go, if they fit (within the capacity, which may have shrunk
    /// below records still held).
    fn place(&self, len: u64) -> Option<u64> {
        let pos = if self.used == 0 {
            Some(0)
        } else if !self.wrapped {
            if self.tail + len <= self.capacity {
                Some(self.tail)
            } else {
                (len <= self.head).then_some(0)
            }
        } else {
            (self.tail + len <= self.head).then_some(self.tail)
        };
        pos.filter(|p| p + len <= self.capacity)
    }

    /// Writes `data` into the spool; returns its position, or `None` when it does not fit (or
    /// the file cannot be written: logged once).
    pub fn put(&mut self, data: &[u8]) -> Option<u64> {
        let len = data.len() as u64;
        if self.broken || len == 0 {
            return None;
        }
        if self.used == 0 {
            self.head = 0;
            self.tail = 0;
            self.wrapped = false;
        }
        let pos = self.place(len)?;
        if let Err(e) = self.file.write_all_at(data, pos) {
            tracing::warn!(path = %self.path.display(), error = %e,
                "writing the spool failed: it takes nothing more until it empties");
            self.broken = true;
            return None;
        }
        if pos < self.tail || (pos == 0 && self.used > 0) {
            self.wrapped = true;
        }
        self.tail = pos + len;
        self.used += len;
        self.high = self.high.max(self.tail);
        Some(pos)
    }

    /// Frees the oldest record (at `pos`, `len` bytes long).
    pub fn free(&mut self, pos: u64, len: u64) {
        self.used -= len;
        if self.wrapped && pos < self.head {
            self.wrapped = false;
        }
        self.head = pos + len;
        if self.used == 0 {
            self.broken = false;
            if self.high > SHRINK_ABOVE {
                // Give the disk space back once an outage is over.
                if let Err(e) = self.file.set_len(0) {
                    tracing::warn!(path = %self.path.display(), error = %e, "shrinking the spool");
                }
                self.high = 0;
            }
        }
    }
}

/// Reads a spooled record's bytes.
pub fn read(file: &File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured writes are private: 0600 whatever the umask, also over an older, open spool; a
    /// symlink at the spool's name is refused.
    #[test]
    fn the_spool_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.spool");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _s = Spool::create(&p, 10).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("h.spool");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(Spool::create(&link, 10).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_new_size_applies_to_new_records_and_keeps_the_held_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::create(&dir.path().join("g.spool"), 10).unwrap();
        let a = s.put(&[1; 4]).unwrap();
        let b = s.put(&[2; 4]).unwrap();
        // Shrunk below what is held: nothing new fits, the held records read back.
        s.set_capacity(3);
        assert_eq!(s.put(&[3; 1]), None);
        s.free(a, 4);
        // [0, 4) is free, but only [0, 3) is within the new size.
        assert_eq!(s.put(&[3; 4]), None);
        let c = s.put(&[3; 3]).unwrap();
        assert_eq!(c, 0);
        assert_eq!(read(&s.reader(), b, 4).unwrap(), vec![2; 4]);
        s.free(b, 4);
        s.free(c, 3);
        // Off: nothing at all.
        s.set_capacity(0);
        assert_eq!(s.put(&[4; 1]), None);
        // Grown: the whole new size.
        s.set_capacity(20);
        assert_eq!(s.put(&[5; 20]), Some(0));
    }

    #[test]
    fn a_ring_in_fifo_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::create(&dir.path().join("g.spool"), 10).unwrap();
        let a = s.put(&[1; 4]).unwrap();
        let b = s.put(&[2; 4]).unwrap();
        assert_eq!((a, b), (0, 4));
        assert_eq!(s.put(&[3; 4]), None, "full");
        s.free(a, 4);
        let c = s.put(&[3; 3]).unwrap();
        assert_eq!(c, 0, "wraps into the freed start");
        assert_eq!(s.put(&[4; 2]), None, "would overrun b");
        assert_eq!(read(&s.reader(), b, 4).unwrap(), vec![2; 4]);
        s.free(b, 4);
        let d = s.put(&[4; 2]).unwrap();
        assert_eq!(d, 3);
        s.free(c, 3);
        s.free(d, 2);
        assert_eq!(s.used(), 0);
        assert_eq!(s.put(&[5; 10]), Some(0), "empty: the whole ring");
    }
}
