//! Durable publication of files: atomic replacement (`write_atomic`, `create_private`), directory
//! fsync, and the cleanup of what a crash in the middle leaves.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::store::{Result, StoreError};

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

/// Publish `bytes` at `path` atomically: write `path.tmp`, fsync, rename, fsync the directory.
/// The file is 0600 (`create_private`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = create_private(&tmp).map_err(StoreError::io("create", &tmp))?;
    f.write_all(bytes).map_err(StoreError::io("write", &tmp))?;
    f.sync_all().map_err(StoreError::io("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(StoreError::io("rename into place", path))?;
    // A bare file name's parent is "" (the current directory).
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(dir)
}

/// Create a new private (0600) file at `path` for writing, never through a symlink: a stale file
/// (or a symlink someone planted) at `path` is removed first, then the file is made with
/// `O_CREAT|O_EXCL|O_NOFOLLOW`, which fails rather than follow or reuse anything put back there.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
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
    use std::os::unix::fs::PermissionsExt;

    /// A symlink planted at `NAME.tmp` is removed, not followed: its target keeps its contents and
    /// the published file is a private regular file.
    #[test]
    fn write_atomic_does_not_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, dir.path().join("state.tmp")).unwrap();
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert!(!dir.path().join("state.tmp").exists());
    }
}
