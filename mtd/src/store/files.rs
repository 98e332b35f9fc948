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
