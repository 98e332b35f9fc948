//! Small file-system helpers for durable publication of files.

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
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
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
