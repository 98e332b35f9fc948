//! `GET|POST /v1/attachments`, `POST /v1/detach`, `POST /v1/mounts`, `POST /v1/umount`: each
//! change answers with the [`Attachment`] it made or removed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::views::attach::Attachment;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub export: String,
    #[serde(default)]
    pub writable: bool,
    #[serde(default)]
    pub partitions: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRequest {
    pub device: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRequest {
    pub export: String,
    pub dir: PathBuf,
    #[serde(default)]
    pub partition: Option<u32>,
    #[serde(default)]
    pub options: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UmountRequest {
    pub dir: PathBuf,
}
