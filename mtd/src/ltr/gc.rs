//! Garbage collection: manifests past their `keep_until_ms` are deleted, then chunks that no
//! manifest left in the store names (any group's: chunks are shared) and that are older than the
//! grace period. The grace keeps a chunk another target's archive (sharing the store) has just
//! uploaded but not yet named in a manifest; within this daemon archives and collections never
//! overlap.
//!
//! With Object Lock on, deletes remove every version of an object (an Object Lock bucket is
//! versioned: a plain delete would leave the data behind a delete marker). S3 refuses to delete
//! a version still locked: that object is counted, logged and left for a later collection, and
//! a manifest left so keeps its chunks.

use std::collections::HashSet;

use super::chunk::{self, Hash};
use super::error::Result;
use super::objects::Deleted;
use super::Ltr;

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcStats {
    pub manifests_deleted: u64,
    pub manifests_kept: u64,
    pub chunks_deleted: u64,
    pub chunk_bytes_deleted: u64,
    pub chunks_kept: u64,
    /// Unreferenced chunks younger than the grace period, left for a later collection.
    pub chunks_in_grace: u64,
    /// Object Lock on: expired manifests and unreferenced chunks S3 refused to delete because
    /// their lock has not ended yet (the chunks' lock runs past their last point's expiry).
    #[serde(default)]
    pub manifests_locked: u64,
    #[serde(default)]
    pub chunks_locked: u64,
}

impl Ltr {
    /// Collect as of `now_ms`, keeping unreferenced chunks younger than `grace_ms`.
    pub fn gc(&self, now_ms: u64, grace_ms: u64) -> Result<GcStats> {
        let _x = self.exclusive.lock().expect("ltr exclusive lock");
        let mut stats = GcStats::default();
        // Manifests: from the store itself (another target's are there too), not the catalog.
        let mut referenced: HashSet<Hash> = HashSet::new();
        for o in self.objects.list("points")? {
            if !o.key.ends_with(".json") {
                continue;
            }
            let m = match self.manifest_at(&o.key) {
                Ok(m) => m,
                Err(e) => {
                    // Unreadable: keep it and every chunk (we cannot know which it names), so
                    // stop rather than delete chunks it may need.
                    tracing::error!(key = %o.key, error = %e, "garbage collection stopped: a manifest is unreadable");
                    return Err(e);
                }
            };
            if m.keep_until_ms < now_ms {
                match self.objects.delete_versions(&o.key)? {
                    Deleted::Gone => {
                        self.catalog
                            .lock()
                            .expect("catalog lock")
                            .remove(&m.group, &m.disk, m.seq);
                        stats.manifests_deleted += 1;
                        tracing::info!(group = %m.group, disk = %m.disk, seq = m.seq, "long-term point expired");
                        continue;
                    }
                    Deleted::Locked => {
                        // Still in the store: its chunks stay with it.
                        stats.manifests_locked += 1;
                        tracing::info!(key = %o.key, "an expired long-term manifest is still locked: left for a later collection");
                    }
                }
            } else {
                stats.manifests_kept += 1;
            }
            referenced.extend(m.chunks.iter().filter_map(|c| chunk::from_hex(c)));
        }
        // The expired manifests' deletions are durable before any chunk they named goes: a
        // power cut must not bring back a manifest whose chunks are gone.
        if stats.manifests_deleted > 0 {
            self.objects.flush()?;
        }
        for o in self.objects.list("chunks")? {
            let Some(h) = o.key.strip_prefix("chunks/").and_then(chunk::from_hex) else {
                continue;
            };
            if referenced.contains(&h) {
                stats.chunks_kept += 1;
            } else if o.modified_ms.saturating_add(grace_ms) > now_ms {
                stats.chunks_in_grace += 1;
            } else {
                // Out of the known set first: no archive may count on it from now on.
                self.known.lock().expect("known lock").remove(&h);
                match self.objects.delete_versions(&o.key)? {
                    Deleted::Gone => {
                        self.lock_ends.lock().expect("lock ends lock").forget(&h);
                        stats.chunks_deleted += 1;
                        stats.chunk_bytes_deleted += o.size;
                    }
                    Deleted::Locked => {
                        // Still stored, so usable again (a point reusing it extends its
                        // lock as needed).
                        self.known.lock().expect("known lock").insert(h);
                        stats.chunks_locked += 1;
                    }
                }
            }
        }
        if stats.chunks_locked > 0 {
            tracing::info!(
                chunks = stats.chunks_locked,
                "unreferenced long-term chunks are still locked: left for a later collection"
            );
        }
        tracing::info!(?stats, "long-term garbage collected");
        Ok(stats)
    }
}
