//! Small file-system helpers for durable publication of files.

use std::fs;
use std::path::Path;

use rewind_linux::atomic;

use crate::store::{Result, StoreError};

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    atomic::sync_dir(dir).map_err(StoreError::io("fsync directory", dir))
}

/// Publish `bytes` at `path` atomically, a private (0600) file (`rewind_linux::atomic::write`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic::write(path, bytes).map_err(|e| StoreError::io(e.op, e.path)(e.source))
}

/// Make `dir` 0700 if it is open to anybody else (the data directory of an older version, or
/// one made under another umask), saying so: replica data is nobody else's business.
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(mode) = atomic::make_private_dir(dir)? {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data directory was open to other users; making it 0700"
        );
    }
    Ok(())
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

/// Before binding a unix socket: remove a socket file left by a daemon that died (binding would
/// fail on it), but refuse one a live server answers on, and anything that is not a socket.
/// `what` names the socket and `flag` the option that moves it, for the error.
pub async fn remove_stale_socket(path: &Path, what: &str, flag: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = path.symlink_metadata() else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{what} socket path {} exists and is not a socket; remove it or choose another {flag}",
            path.display()
        );
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        anyhow::bail!(
            "another rewind-mtd serves the {what} socket {}; give this one another {flag}",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("removing stale {what} socket {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_open_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(dir.path()).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
