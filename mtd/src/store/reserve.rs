//! The space reserve: a preallocated file that the store gives up when the disk is full, so
//! that the merger (which needs space before it frees any) can always run.
//!
//! Why a reserve, and why this size. Folding one segment into the base needs new blocks before
//! the segment can be deleted: the manifest's new horizon is published as a new file (`*.tmp`,
//! then a rename), and records that land in holes of a sparse base image allocate them. On a
//! 100% full disk both fail, and the merger, the one thing that frees journal space, would be
//! stuck behind the writer it should unblock. Folding in place instead would mean either thick
//! base images (every group's disks allocated whole up front, and a trim would still punch
//! holes) or punching merged records out of a segment while views read it. A reserve keeps the
//! layout and the read path as they are. One merge step (see `merger.rs`: one segment at a
//! time) allocates at most the segment's record bytes plus a few blocks of metadata, so a
//! reserve of one segment (with the chunk that may overshoot it, see `writer.rs`) plus
//! [`SLACK`] always lets it finish; the segment deleted after it frees at least as much as the
//! base took, so the reserve can be taken back at once.
//!
//! What it cannot do: make room where nothing has expired. A disk filled by history still
//! inside the retention window stays full until an operator frees space or shortens the
//! retention (which the control API does on the reserve too).
//!
//! While the reserve is spent (between [`SpaceReserve::release`] and [`SpaceReserve::restore`])
//! the writer makes no tries (`may_write` is false): otherwise its next retry would take the
//! freed space and starve the merge it is waiting for.
//!
//! The file needs no durability (it holds no data): a power cut that drops it just means it is
//! allocated again at the next start.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Metadata a merge step allocates besides record data: the manifest's temporary file, extent
/// tree blocks of the base, directory blocks.
pub(crate) const SLACK: u64 = 1 << 20;

/// The file's name in the data directory.
pub(crate) const RESERVE_FILE: &str = "space-reserve";

#[derive(Debug)]
pub(crate) struct SpaceReserve {
    path: PathBuf,
    /// The size it should have; 0 disables it.
    size: u64,
    file: Mutex<Option<File>>,
    /// The reserve is given up for a merge: the writer waits.
    spent: AtomicBool,
}

impl SpaceReserve {
    /// The reserve of the data directory `dir`, allocated now as far as space allows (a start on
    /// a full disk runs without it, and [`SpaceReserve::restore`] takes it later).
    pub(crate) fn open(dir: &Path, size: u64) -> SpaceReserve {
        let r = SpaceReserve {
            path: dir.join(RESERVE_FILE),
            size,
            file: Mutex::new(None),
            spent: AtomicBool::new(false),
        };
        if size == 0 {
            // Disabled: a reserve left by an earlier run with one is given back.
            let _ = std::fs::remove_file(&r.path);
        } else {
            r.fill();
        }
        r
    }

    /// No reserve, and nothing on disk touched (a store opened read-only).
    pub(crate) fn none(dir: &Path) -> SpaceReserve {
        SpaceReserve {
            path: dir.join(RESERVE_FILE),
            size: 0,
            file: Mutex::new(None),
            spent: AtomicBool::new(false),
        }
    }

    /// Whether the writer may try to allocate (false while a merge spends the reserve).
    pub(crate) fn may_write(&self) -> bool {
        !self.spent.load(Ordering::Acquire)
    }

    /// Bytes currently held.
    pub(crate) fn held_bytes(&self) -> u64 {
        let f = self.file.lock().expect("reserve lock");
        f.as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len())
    }

    /// Give the reserve's space back to the file system for a merge, and stop the writer's
    /// tries until [`SpaceReserve::restore`]. False when there is nothing to give (disabled,
    /// or not allocated since the disk filled).
    pub(crate) fn release(&self) -> bool {
        let f = self.file.lock().expect("reserve lock");
        let Some(file) = f.as_ref() else {
            return false;
        };
        if file.metadata().map_or(0, |m| m.len()) == 0 {
            return false;
        }
        self.spent.store(true, Ordering::Release);
        if let Err(e) = file.set_len(0) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot release the space reserve");
            self.spent.store(false, Ordering::Release);
            return false;
        }
        tracing::warn!(path = %self.path.display(), bytes = self.size, "disk full: released the space reserve so that the merger can free journal space");
        true
    }

    /// Take the reserve back (as far as space allows) and let the writer try again. Called after
    /// a merge that spent it, and on each merger pass while it is not whole.
    pub(crate) fn restore(&self) {
        if self.size > 0 && self.held_bytes() < self.size {
            self.fill();
        }
        if self.spent.swap(false, Ordering::AcqRel) {
            tracing::info!(
                held = self.held_bytes(),
                "space reserve taken back; the writer may allocate again"
            );
        }
    }

    /// Run `step`; if it fails for lack of space, run it again on the released reserve (and
    /// take the reserve back after). For small steps that let space be freed (a manifest
    /// change that shortens the retention).
    pub(crate) fn spend_on_shortage<T>(
        &self,
        mut step: impl FnMut() -> super::Result<T>,
    ) -> super::Result<T> {
        match step() {
            Err(e)
                if super::shortage::Shortage::of(&e) == Some(super::shortage::Shortage::Space)
                    && self.release() =>
            {
                let r = step();
                self.restore();
                r
            }
            r => r,
        }
    }

    /// Allocate up to `size` (fallocate: real blocks, not a sparse length). On ENOSPC the
    /// reserve keeps what it got; it grows at the next call.
    fn fill(&self) {
        let mut f = self.file.lock().expect("reserve lock");
        if f.is_none() {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)
            {
                Ok(file) => *f = Some(file),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot open the space reserve; will retry");
                    return;
                }
            }
        }
        let file = f.as_ref().expect("opened");
        if let Err(e) = allocate(file, self.size) {
            tracing::warn!(path = %self.path.display(), bytes = self.size, error = %e,
                "cannot allocate the whole space reserve; will retry");
        }
    }
}

/// fallocate `[0, size)`, in steps so that a nearly full disk still yields what it has.
fn allocate(file: &File, size: u64) -> std::io::Result<()> {
    const STEP: u64 = 1 << 20;
    let mut at = 0;
    while at < size {
        let len = STEP.min(size - at);
        nix::fcntl::fallocate(
            file.as_raw_fd(),
            nix::fcntl::FallocateFlags::empty(),
            at as i64,
            len as i64,
        )?;
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_stops_the_writer_until_restore() {
        let dir = tempfile::tempdir().unwrap();
        let r = SpaceReserve::open(dir.path(), 3 << 20);
        assert_eq!(r.held_bytes(), 3 << 20);
        let blocks = |p: &Path| std::os::unix::fs::MetadataExt::blocks(&p.metadata().unwrap());
        assert!(
            blocks(&dir.path().join(RESERVE_FILE)) * 512 >= 3 << 20,
            "allocated, not sparse"
        );
        assert!(r.may_write());
        assert!(r.release());
        assert!(!r.may_write());
        assert_eq!(r.held_bytes(), 0);
        assert!(!r.release(), "nothing left to give");
        r.restore();
        assert!(r.may_write());
        assert_eq!(r.held_bytes(), 3 << 20);
    }

    #[test]
    fn a_disabled_reserve_gives_nothing_and_removes_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        drop(SpaceReserve::open(dir.path(), 1 << 20));
        assert!(dir.path().join(RESERVE_FILE).exists());
        let r = SpaceReserve::open(dir.path(), 0);
        assert!(!dir.path().join(RESERVE_FILE).exists());
        assert!(!r.release());
        assert!(r.may_write());
    }
}
