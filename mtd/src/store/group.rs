//! A protection group's replica: manifest, base images, journal segments, indexes and points.
//!
//! The state behind the `RwLock` is what readers see. The writer publishes a chunk into it only
//! after the chunk is durable, so a view never reads bytes that a crash could take back.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rewind_formats::segment::ChunkHeader;
use rewind_formats::Seq;
use tokio::sync::watch;

use super::feeder::Feeder;
use super::fence::Fenced;
use super::files;
use super::index::DiskIndex;
use super::manifest::Manifest;
use super::pins::Pins;
use super::points::Points;
use super::replay::{add_segment, cut_history, list_segments, publish_chunk, remove_segment_files};
use super::segment_file::{self, LoadMode};
use super::{Result, StoreError};

/// What the group keeps about one journal segment.
#[derive(Debug)]
pub(crate) struct SegmentMeta {
    pub(crate) id: u64,
    pub(crate) path: PathBuf,
    /// Read handle; readers clone the Arc so a merged-away segment stays readable until they finish.
    pub(crate) file: Arc<File>,
    pub(crate) first_seq: Seq,
    /// Newest record seq in the segment (0 if it holds only tags).
    pub(crate) last_seq: Seq,
    /// Newest seq the segment mentions, tags included: it is merged away only once the horizon
    /// reaches this, so a segment holding only a tag is never mistaken for an already-merged one.
    pub(crate) max_seq: Seq,
    pub(crate) len_bytes: u64,
    pub(crate) sealed: bool,
    /// Newest source timestamp in the segment: the segment expires when this leaves the window.
    pub(crate) newest_ms: u64,
    pub(crate) chunks: usize,
    /// Journal bytes spent padding sub-block data records to whole blocks (`quota::padding_of`).
    pub(crate) padding_bytes: u64,
    /// Plain bytes of the segment's data records (before any zstd encoding): with `len_bytes`,
    /// what compression saves.
    pub(crate) plain_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct GroupState {
    pub(crate) manifest: Manifest,
    pub(crate) segments: BTreeMap<u64, SegmentMeta>,
    pub(crate) indexes: Vec<DiskIndex>,
    pub(crate) points: Points,
    pub(crate) durable: Seq,
    pub(crate) bases: Vec<Arc<File>>,
}

impl GroupState {
    pub(crate) fn horizon(&self) -> Seq {
        Seq(self.manifest.horizon_seq)
    }

    pub(crate) fn journal_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len_bytes).sum()
    }

    /// Plain bytes of the data records in the journal segments.
    pub(crate) fn journal_plain_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.plain_bytes).sum()
    }

    pub(crate) fn segment_file(&self, id: u64) -> Option<Arc<File>> {
        self.segments.get(&id).map(|s| s.file.clone())
    }

    /// Records in the group's index (journal not merged yet).
    pub(crate) fn extents(&self) -> u64 {
        self.indexes.iter().map(|ix| ix.extents() as u64).sum()
    }

    /// Padding bytes in the group's journal segments.
    pub(crate) fn padding_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.padding_bytes).sum()
    }
}

pub struct Group {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    /// Only the store takes this lock: others ask the group's methods (`reads.rs`).
    pub(super) state: RwLock<GroupState>,
    pub(super) pins: Mutex<Pins>,
    /// Newest durable seq, for sessions to turn into ACK frames.
    durable_tx: watch::Sender<Seq>,
    /// Who feeds this group now (one at a time; see `feeder.rs`).
    pub(super) feeder: Mutex<Option<Arc<dyn Feeder>>>,
    /// The last feeder, once it left (in memory: since this daemon started).
    pub(super) last_feeder: Mutex<Option<super::feeder::AgentSeen>>,
    /// What the group's agent last reported of it (CONTROL op report; in memory).
    pub(super) agent_report: Mutex<Option<rewind_formats::agent_report::AgentReport>>,
    /// Tag requests the agent refused, (name, why), until their waiter takes them.
    pub(super) tag_refusals: Mutex<Vec<(String, String)>>,
    /// A Resume a failed planned failover could not deliver (no agent was connected): kept
    /// here, where the next session finds it, so a drain never leaves the source read-only by
    /// mistake.
    resume_owed: Mutex<Option<String>>,
    /// The group's replication policy and its delivery to the agent (`policy.rs`).
    pub(super) policy: Mutex<super::policy::GroupPolicy>,
    /// Serialises manifest updates (sessions, merger).
    pub(super) manifest_lock: Mutex<()>,
    /// Chunks (batches and tags) handed to the writer, and chunks published after fdatasync. A new
    /// session resumes only once they are equal, so a batch still queued from a session that just
    /// ended is never accepted twice; a session that ends cleanly waits the same way, so an agent
    /// that sees the close knows its trailing tags are durable.
    queued_chunks: std::sync::atomic::AtomicU64,
    published_chunks: std::sync::atomic::AtomicU64,
    /// Records and padding bytes admitted but not yet published (queued for the writer): the
    /// quotas count them, so a fast sender cannot outrun the check by keeping the queue full.
    pending: Mutex<Pending>,
    /// Data bytes published per disk, for monitoring.
    pub(super) applied: super::facts::AppliedBytes,
    /// Decompressed hot frames of encoded journal records (`frames.rs`).
    pub(crate) frames: super::frames::FrameCache,
}

/// What batches admitted to the writer but not yet published will add (see `Group::pending`).
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) records: u64,
    pub(crate) padding_bytes: u64,
}

pub(crate) fn base_path(dir: &Path, disk: &str) -> PathBuf {
    dir.join("base").join(format!("{disk}.img"))
}

pub(crate) fn journal_dir(dir: &Path) -> PathBuf {
    dir.join("journal")
}

impl Group {
    /// Create a new group on disk: directories, sparse base images, manifest (published last, so a
    /// crash part way leaves a directory without a manifest, which loading skips and reports).
    pub(crate) fn create(dir: PathBuf, manifest: Manifest) -> Result<Arc<Group>> {
        fs::create_dir_all(dir.join("base")).map_err(StoreError::io("create directory", &dir))?;
        fs::create_dir_all(journal_dir(&dir)).map_err(StoreError::io("create directory", &dir))?;
        for d in &manifest.disks {
            let p = base_path(&dir, &d.name);
            let f = File::create(&p).map_err(StoreError::io("create base image", &p))?;
            f.set_len(d.size_bytes)
                .map_err(StoreError::io("size base image", &p))?;
            f.sync_all().map_err(StoreError::io("fsync", &p))?;
        }
        files::sync_dir(&dir.join("base"))?;
        manifest.store(&dir)?;
        if let Some(parent) = dir.parent() {
            files::sync_dir(parent)?;
        }
        Self::load(dir, LoadMode::Repair)
    }

    /// Load a group: manifest, base images, every segment (repairing in `Repair` mode), and rebuild
    /// indexes and points. Returns the group and the segments already merged into the base but not
    /// yet deleted (a merge interrupted by a crash), which the caller finishes.
    pub(crate) fn load(dir: PathBuf, mode: LoadMode) -> Result<Arc<Group>> {
        let manifest = Manifest::load(&dir)?;
        let name = manifest.group.clone();
        if mode == LoadMode::Repair {
            files::remove_stray_tmp(&dir)?;
        }
        let mut bases = Vec::new();
        for d in &manifest.disks {
            let p = base_path(&dir, &d.name);
            let f = match mode {
                LoadMode::Repair => OpenOptions::new().read(true).write(true).open(&p),
                LoadMode::ReadOnly => File::open(&p),
            }
            .map_err(StoreError::io("open base image", &p))?;
            bases.push(Arc::new(f));
        }
        let mut state = GroupState {
            indexes: manifest
                .disks
                .iter()
                .map(|_| DiskIndex::default())
                .collect(),
            durable: Seq(manifest.horizon_seq),
            manifest,
            segments: BTreeMap::new(),
            points: Points::default(),
            bases,
        };
        for t in &state.manifest.horizon_tags {
            state.points.add_tag(t.clone());
        }
        for (id, path) in list_segments(&journal_dir(&dir))? {
            let seg = segment_file::load_segment(&path, mode)?;
            if seg.footer.chunks.is_empty() {
                if mode == LoadMode::Repair {
                    tracing::info!(segment = %path.display(), "removing empty segment");
                    fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                }
                continue;
            }
            add_segment(&mut state, id, seg)?;
        }
        if let Some(end) = state.manifest.history_end {
            let gone = cut_history(&mut state, Seq(end));
            if mode == LoadMode::Repair {
                remove_segment_files(&gone);
            }
        }
        let durable = state.durable;
        let policy = super::policy::GroupPolicy::load(&dir)?;
        let applied = super::facts::AppliedBytes::new(state.manifest.disks.len());
        Ok(Arc::new(Group {
            name,
            dir,
            state: RwLock::new(state),
            pins: Mutex::new(Pins::default()),
            durable_tx: watch::channel(durable).0,
            feeder: Mutex::new(None),
            last_feeder: Mutex::new(None),
            agent_report: Mutex::new(None),
            tag_refusals: Mutex::new(Vec::new()),
            resume_owed: Mutex::new(None),
            policy,
            manifest_lock: Mutex::new(()),
            queued_chunks: std::sync::atomic::AtomicU64::new(0),
            published_chunks: std::sync::atomic::AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
            applied,
            frames: super::frames::FrameCache::new(
                super::frames::CACHED_FRAMES,
                super::frames::CACHED_TABLES,
            ),
        }))
    }

    pub(crate) fn durable(&self) -> Seq {
        *self.durable_tx.borrow()
    }

    /// Admitted but unpublished records and padding (for the quotas).
    pub(crate) fn pending(&self) -> Pending {
        *self.pending.lock().expect("pending lock")
    }

    /// Count a records chunk as pending until `publish` sees it (call before queueing it).
    pub(crate) fn add_pending(&self, records: u64, padding_bytes: u64) {
        let mut p = self.pending.lock().expect("pending lock");
        p.records += records;
        p.padding_bytes += padding_bytes;
    }

    /// Note that one more chunk is queued for the writer (call before queueing it).
    pub fn note_queued(&self) {
        self.queued_chunks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Wait until every chunk queued so far for this group is durable and published; returns the
    /// durable seq then.
    pub async fn drained(&self) -> Seq {
        use std::sync::atomic::Ordering::SeqCst;
        let target = self.queued_chunks.load(SeqCst);
        let mut rx = self.durable_tx.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            if self.published_chunks.load(SeqCst) >= target {
                return self.durable();
            }
            if rx.changed().await.is_err() {
                return d;
            }
        }
    }

    pub(crate) fn subscribe_durable(&self) -> watch::Receiver<Seq> {
        self.durable_tx.subscribe()
    }

    pub(crate) fn next_segment_id(&self) -> u64 {
        let st = self.state.read().expect("group lock");
        st.segments.keys().next_back().map_or(1, |id| id + 1)
    }

    /// Make a durable chunk visible: index its records, note its time and tag, advance durable.
    /// Called by the writer, in seq order, only after the chunk's fdatasync completed.
    pub(crate) fn publish(&self, segment_id: u64, pos: u64, h: &ChunkHeader) {
        let mut st = self.state.write().expect("group lock");
        publish_chunk(&mut st, segment_id, pos, h);
        self.applied.add(h);
        {
            // Now in the index and the segment's padding: no longer pending. (Chunks queued
            // without admission, e.g. by tests, were never counted: saturate.)
            let mut p = self.pending.lock().expect("pending lock");
            p.records = p.records.saturating_sub(h.records.len() as u64);
            p.padding_bytes = p.padding_bytes.saturating_sub(super::quota::padding_of(h));
        }
        if let Some(meta) = st.segments.get_mut(&segment_id) {
            meta.len_bytes = meta.len_bytes.max(pos + h.total_len);
        }
        let durable = st.durable;
        drop(st);
        self.published_chunks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // send_replace wakes waiters even when durable did not move (a tag chunk).
        self.durable_tx.send_replace(durable);
    }

    /// Register a new, still empty, open segment (its header is durable).
    pub(crate) fn add_open_segment(&self, meta: SegmentMeta) {
        self.state
            .write()
            .expect("group lock")
            .segments
            .insert(meta.id, meta);
    }

    /// Record that a segment was sealed (its footer is durable).
    pub(crate) fn mark_sealed(&self, segment_id: u64, len_bytes: u64) {
        let mut st = self.state.write().expect("group lock");
        if let Some(meta) = st.segments.get_mut(&segment_id) {
            meta.sealed = true;
            meta.len_bytes = len_bytes;
        }
    }

    /// Discard the history after `end` (failover commit): persisted in the manifest first, then
    /// the points after it disappear and the segments holding only later records are deleted.
    /// Nothing feeds the group any more (it is fenced), so nothing can land after `end`.
    pub(crate) fn discard_after(&self, end: Seq) -> Result<()> {
        self.update_manifest(|m| m.history_end = Some(end.0))?;
        let mut st = self.state.write().expect("group lock");
        let gone = cut_history(&mut st, end);
        let durable = st.durable;
        drop(st);
        remove_segment_files(&gone);
        self.durable_tx.send_replace(durable);
        tracing::info!(group = %self.name, end = end.0, segments = gone.len(), "history after the committed point discarded");
        Ok(())
    }

    /// Change the manifest: durable on disk before anyone reads the change; one change at a
    /// time. Returns the new manifest.
    pub(super) fn update_manifest(&self, f: impl FnOnce(&mut Manifest)) -> Result<Manifest> {
        let _l = self.manifest_lock.lock().expect("manifest lock");
        let mut m = self.state.read().expect("group lock").manifest.clone();
        f(&mut m);
        m.store(&self.dir)?;
        self.state.write().expect("group lock").manifest = m.clone();
        Ok(m)
    }

    /// Record the agent that owns the group (groups made before owners were recorded).
    pub(crate) fn set_owner(&self, agent: &str) -> Result<()> {
        self.update_manifest(|m| m.owner = Some(agent.to_string()))?;
        tracing::info!(group = %self.name, agent, "group adopted by its agent");
        Ok(())
    }

    /// Record the generation an adopted group takes from its first agent.
    pub(crate) fn set_generation(&self, generation: u64) -> Result<()> {
        self.update_manifest(|m| m.generation = generation)?;
        tracing::info!(group = %self.name, generation, "adopted group takes its first agent's generation");
        Ok(())
    }

    /// Whether the group is adopted and still holds no record: its first agent must compare
    /// every block (the base is a copy of other disks, not empty).
    pub(crate) fn adopt_pending(&self) -> bool {
        let st = self.state.read().expect("group lock");
        st.manifest.adopted && st.durable.0 == 0
    }

    /// Change the retention window; durable in the manifest before it takes effect.
    pub(crate) fn set_retention(&self, retention_ms: u64) -> Result<()> {
        self.update_manifest(|m| m.retention_ms = retention_ms)?;
        tracing::info!(group = %self.name, retention_ms, "retention changed");
        Ok(())
    }

    /// Remember that the agent is owed a Resume it could not be sent now (taken by its next
    /// session).
    pub(crate) fn owe_resume(&self, tag: &str) {
        *self.resume_owed.lock().expect("resume lock") = Some(tag.to_string());
    }

    /// The resume a failed drain still owes the agent (taken once).
    pub(crate) fn take_resume_owed(&self) -> Option<String> {
        self.resume_owed.lock().expect("resume lock").take()
    }

    /// Fence the group's current source: bump the generation (durable in the manifest before
    /// anything else), record why, and tell the feeder (its session ends). From then on requests
    /// with the old generation are refused with the reason. Returns the new generation.
    ///
    /// A batch the old session had already queued for the writer may still become durable after
    /// this returns: wait for [`Group::drained`] before reading the group's latest state.
    pub(crate) fn fence(&self, reason: &str) -> Result<u64> {
        let new = self
            .update_manifest(|m| {
                m.generation += 1;
                m.fenced_reason = Some(reason.to_string());
            })?
            .generation;
        let old = new - 1;
        tracing::warn!(group = %self.name, old_generation = old, generation = new, reason,
            "group fenced: its source agent is refused from now on");
        if let Some(f) = self.feeder() {
            f.fenced(&Fenced {
                group: self.name.clone(),
                reason: Some(reason.to_string()),
                agent_generation: old,
                group_generation: new,
            });
        }
        Ok(new)
    }

    /// Count one more chunk queued for the writer, unless the group was fenced past
    /// `generation` (a feeder of the old generation takes nothing more). Counted under the
    /// group lock: `fence` publishes the new generation under that lock, so a fence either
    /// refuses the chunk or finds it counted (and `drained()` after the fence waits for it).
    pub(crate) fn queue_at(&self, generation: u64) -> std::result::Result<(), Fenced> {
        let st = self.state.read().expect("group lock");
        let m = &st.manifest;
        if m.generation != generation {
            return Err(Fenced {
                group: self.name.clone(),
                reason: m.fenced_reason.clone(),
                agent_generation: generation,
                group_generation: m.generation,
            });
        }
        self.note_queued();
        Ok(())
    }
}

/// A one-disk (1 MiB) group `g` in a temporary directory, for unit tests.
#[cfg(test)]
pub(crate) fn test_group() -> (tempfile::TempDir, Arc<Group>) {
    use crate::store::manifest::{DiskManifest, MANIFEST_VERSION};
    let dir = tempfile::tempdir().unwrap();
    let m = Manifest {
        version: MANIFEST_VERSION,
        group: "g".into(),
        disks: vec![DiskManifest {
            name: "sda".into(),
            size_bytes: 1 << 20,
        }],
        generation: 1,
        retention_ms: 1000,
        horizon_seq: 0,
        horizon_ms: 0,
        horizon_tags: Vec::new(),
        created_ms: 0,
        owner: None,
        history_end: None,
        adopted: false,
        fenced_reason: None,
        epoch: 0,
    };
    let g = Group::create(dir.path().join("g"), m).unwrap();
    (dir, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> (tempfile::TempDir, Arc<Group>) {
        test_group()
    }

    #[test]
    fn load_of_a_new_group_is_empty_and_zero() {
        let (_dir, g) = group();
        assert_eq!(g.durable(), Seq(0));
        let st = g.state.read().unwrap();
        assert_eq!(st.bases[0].metadata().unwrap().len(), 1 << 20);
        assert!(st.segments.is_empty());
    }
}
