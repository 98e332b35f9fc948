//! Errors of long-term retention, each naming the object or file it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LtrError {
    #[error("object store {url}: {op} {key}: {source}")]
    Store {
        url: String,
        op: &'static str,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A request `object_store` cannot make (Object Lock's: see `s3.rs`).
    #[error("object store {url}: {op} {key}: {source}")]
    S3 {
        url: String,
        op: &'static str,
        key: String,
        #[source]
        source: super::s3::S3Failure,
    },
    /// A chunk or manifest whose bytes do not match what names it: never handed out as data.
    #[error("corrupt long-term object {key}: {why}")]
    Corrupt { key: String, why: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error(transparent)]
    Group(Box<crate::store::StoreError>),
}

impl From<crate::store::StoreError> for LtrError {
    fn from(e: crate::store::StoreError) -> LtrError {
        LtrError::Group(Box::new(e))
    }
}

impl LtrError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> LtrError {
        let path = path.into();
        move |source| LtrError::Io { op, path, source }
    }
}

pub type Result<T, E = LtrError> = std::result::Result<T, E>;
