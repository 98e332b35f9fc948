//! Durable publication of files for the store and its neighbours (views, failover): `rewind_linux::atomic` with
//! errors as `StoreError`s, and the cleanup of what a crash in the middle leaves.

use std::fs;
use std::path::Path;

use rewind_linux::atomic;

use crate::store::{Result, StoreError};

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    atomic::sync_dir(dir).map_err(StoreError::io("fsync directory", dir))
}

/// Make `dir` and its missing parents so that they survive a power cut: the parent of each
/// directory made is fsynced (create_dir_all alone leaves the new entries in the page cache,
/// and a power cut then drops the directory with every file fsynced in it). `dir`'s parent is
/// fsynced even when `dir` exists: a previous run may have made it and died before the sync.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    let mut parents = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
        let parent = p.parent().filter(|q| !q.as_os_str().is_empty());
        parents.push(parent.unwrap_or(Path::new(".")));
        if p.exists() && p != dir {
            break;
        }
        d = parent;
    }
    fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
    // Deepest first: each directory's own entries are durable before the entry naming it.
    for p in parents {
        sync_dir(p)?;
    }
    Ok(())
}

/// Publish `bytes` at `path` atomically, a private (0600) file (`rewind_linux::atomic::write`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic::write(path, bytes).map_err(|e| StoreError::io(e.op, e.path)(e.source))
}

/// Remove stray `*.tmp` files left by a crash during `write_atomic`.
pub fn remove_stray_tmp(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(StoreError::io("read directory", dir))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "tmp") {
            tracing::info!(path = %p.display(), "removing stray temporary file");
            fs::remove_file(&p).map_err(StoreError::io("remove", &p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the power-cut file system: directories made, a file fsynced in the deepest, a cut.
    /// Everything is there after it (with create_dir_all alone, nothing is).
    #[test]
    fn made_directories_survive_a_power_cut() {
        let work = tempfile::tempdir().unwrap();
        let Some(mut pc) = rewind_benches::harness::powercut_mount(work.path(), "pc") else {
            return;
        };
        let deep = pc.dir().join("a/b/c");
        create_dir_durable(&deep).unwrap();
        let file = deep.join("f");
        write_atomic(&file, b"durable").unwrap();
        // An existing directory: its parent is synced again (a crash may have left it unsynced).
        let top = pc.dir().join("top");
        fs::create_dir(&top).unwrap();
        create_dir_durable(&top).unwrap();
        pc.cut().unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"durable");
        assert!(top.is_dir());
    }
}
