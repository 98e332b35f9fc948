//! What the store shows monitoring (`crate::metrics`): a group's figures read under one short
//! hold of its lock, and the bytes applied per disk, counted as chunks are published.

use std::sync::atomic::{AtomicU64, Ordering};

use rewind_formats::segment::ChunkHeader;
use rewind_formats::{RecordKind, TagKind};

use super::group::Group;

/// Bytes of disk data made durable per disk since the daemon started (relaxed atomics: the
/// writer adds, a scrape reads).
#[derive(Debug)]
pub(crate) struct AppliedBytes(Box<[AtomicU64]>);

impl AppliedBytes {
    pub(crate) fn new(disks: usize) -> AppliedBytes {
        AppliedBytes((0..disks).map(|_| AtomicU64::new(0)).collect())
    }

    /// Counts a published chunk's data records (zero and trim ranges carry no data).
    pub(crate) fn add(&self, h: &ChunkHeader) {
        for r in h.records.iter().filter(|r| r.kind == RecordKind::Data) {
            if let Some(c) = self.0.get(usize::from(r.disk)) {
                c.fetch_add(u64::from(r.len), Ordering::Relaxed);
            }
        }
    }

    fn get(&self, disk: usize) -> u64 {
        self.0.get(disk).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// One disk of a [`GroupFacts`].
#[derive(Debug, Clone)]
pub(crate) struct DiskFacts {
    pub(crate) name: String,
    pub(crate) size_bytes: u64,
    pub(crate) applied_bytes: u64,
}

/// A group's figures at one moment.
#[derive(Debug, Clone)]
pub(crate) struct GroupFacts {
    pub(crate) disks: Vec<DiskFacts>,
    pub(crate) generation: u64,
    pub(crate) retention_ms: u64,
    pub(crate) created_ms: u64,
    /// Source time of the oldest point a view can open (the horizon once something merged,
    /// else the oldest chunk held); `None` before the first record.
    pub(crate) oldest_point_ms: Option<u64>,
    /// Source time of the newest durable record.
    pub(crate) newest_ms: Option<u64>,
    pub(crate) durable_seq: u64,
    pub(crate) journal_bytes: u64,
    /// Plain bytes of the journal's data records (`journal_bytes` is what they take on disk).
    pub(crate) journal_plain_bytes: u64,
    /// The name of a sync window still open (`initial-sync`, `resync`): the newest points are
    /// not recoverable until it ends.
    pub(crate) open_sync: Option<String>,
    /// The newest tag's source time of each kind held.
    pub(crate) last_tag_ms: Vec<(TagKind, u64)>,
    /// Someone (an agent session) feeds the group now.
    pub(crate) fed: bool,
}

impl Group {
    /// The group's figures for a scrape: one read of its state lock.
    pub(crate) fn facts(&self) -> GroupFacts {
        let fed = self.feeder().is_some();
        let st = self.state.read().expect("group lock");
        let m = &st.manifest;
        let range = st.points.time_range();
        let oldest_point_ms = match m.horizon_ms {
            0 => range.map(|((_, t), _)| t),
            h => Some(h),
        };
        let mut last_tag_ms: Vec<(TagKind, u64)> = Vec::new();
        for t in st.points.tags() {
            match last_tag_ms.iter_mut().find(|(k, _)| *k == t.kind) {
                Some((_, ms)) => *ms = (*ms).max(t.timestamp_ms),
                None => last_tag_ms.push((t.kind, t.timestamp_ms)),
            }
        }
        let open_sync = st
            .points
            .not_recoverable()
            .into_iter()
            .find(|w| w.end.is_none())
            .map(|w| w.begin.name);
        GroupFacts {
            disks: m
                .disks
                .iter()
                .enumerate()
                .map(|(i, d)| DiskFacts {
                    name: d.name.clone(),
                    size_bytes: d.size_bytes,
                    applied_bytes: self.applied.get(i),
                })
                .collect(),
            generation: m.generation,
            retention_ms: m.retention_ms,
            created_ms: m.created_ms,
            oldest_point_ms,
            newest_ms: range.map(|(_, (_, t))| t),
            durable_seq: st.durable.0,
            journal_bytes: st.journal_bytes(),
            journal_plain_bytes: st.journal_plain_bytes(),
            open_sync,
            last_tag_ms,
            fed,
        }
    }
}
