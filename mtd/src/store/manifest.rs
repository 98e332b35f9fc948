//! The group manifest: the few facts about a group that are not in its journal.
//!
//! JSON (serde), published atomically. The horizon is written here *before* the merger changes the
//! base image, so after a crash no view can be opened at a point the half-merged base no longer holds.

use std::path::Path;

use rewind_formats::message::TagInfo;
use serde::{Deserialize, Serialize};

use super::files;
use super::{Result, StoreError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DiskManifest {
    pub(crate) name: String,
    pub(crate) size_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) version: u32,
    pub(crate) group: String,
    pub(crate) disks: Vec<DiskManifest>,
    pub(crate) generation: u64,
    pub(crate) retention_ms: u64,
    /// Every record with seq <= horizon is in the base images; views of older points are refused.
    pub(crate) horizon_seq: u64,
    /// Source timestamp of the horizon seq (0 if none merged yet).
    pub(crate) horizon_ms: u64,
    /// Tags that label the horizon seq itself: the oldest retained point keeps its names after
    /// the segments that held them are merged away.
    #[serde(default)]
    pub(crate) horizon_tags: Vec<TagInfo>,
    pub(crate) created_ms: u64,
    /// The agent identity that created the group (its certificate's name over TLS); only it may
    /// feed the group. Groups made before owners were recorded are adopted by their next agent.
    #[serde(default)]
    pub(crate) owner: Option<String>,
    /// Set by `rewind failover commit`: the history after this seq is discarded (the records
    /// still in a segment that straddles it are never shown again).
    #[serde(default)]
    pub(crate) history_end: Option<u64>,
    /// Set by adopt: the base images are a copy of disks that may differ from the source in any
    /// block, so the first agent must compare every block (never a fresh initial sync, which
    /// skips zero blocks): the target answers "resync needed" while it holds no record yet.
    #[serde(default)]
    pub(crate) adopted: bool,
    /// Why the generation was last bumped by a fence (a failover): told to agents of an older
    /// generation when they are refused.
    #[serde(default)]
    pub(crate) fenced_reason: Option<String>,
    /// The highest epoch a session of the group has come with (see [`super::epoch`]): sessions
    /// below it are refused. 0 in manifests from before epochs.
    #[serde(default)]
    pub(crate) epoch: u64,
}

pub(crate) const MANIFEST_VERSION: u32 = 1;
pub(crate) const MANIFEST_FILE: &str = "group.json";

impl Manifest {
    pub(crate) fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| StoreError::Manifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        if m.version != MANIFEST_VERSION {
            return Err(StoreError::Manifest {
                path,
                why: format!("unsupported version {}", m.version),
            });
        }
        Ok(m)
    }

    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        files::write_atomic(&dir.join(MANIFEST_FILE), &bytes)
    }

    pub(crate) fn disk_index(&self, name: &str) -> Option<usize> {
        self.disks.iter().position(|d| d.name == name)
    }
}
