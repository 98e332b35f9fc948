//! Errors of the store, each saying what failed and on what.

use std::io;
use std::path::PathBuf;

use rewind_formats::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt {what} in {path} at offset {offset}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        offset: u64,
        #[source]
        source: DecodeError,
    },
    #[error("bad manifest {path}: {why}")]
    Manifest { path: PathBuf, why: String },
    #[error("unknown group {0}")]
    UnknownGroup(String),
    #[error("unknown disk {disk} in group {group}")]
    UnknownDisk { group: String, disk: String },
    #[error("bad point {spec:?}: {why}")]
    BadPoint { spec: String, why: String },
    #[error("no point {spec}: {why}")]
    PointNotFound { spec: String, why: String },
    #[error("point {spec} is older than the retention horizon (seq {horizon}): {detail}")]
    PointTooOld {
        spec: String,
        horizon: u64,
        detail: String,
    },
    #[error("data directory {0} is in use by another rewind-mtd")]
    Locked(PathBuf),
    #[error("store failed earlier and accepts no more writes: {0}")]
    Failed(String),
    #[error("point {spec} is not recoverable: {why}")]
    NotRecoverable { spec: String, why: String },
    #[error("no overlay named {0} (see `rewind overlay list`)")]
    UnknownOverlay(String),
    #[error("overlay {name} is in use ({users} open export(s), file(s) or loop device(s)); disconnect or `rewind detach` first")]
    OverlayInUse { name: String, users: usize },
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// Reading a long-term point failed (a chunk missing or corrupt, the object store down).
    #[error("long-term point: {0}")]
    LongTerm(String),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
