//! A protection group's replica: manifest, base images, journal segments, indexes and points.
//!
//! The state behind the `RwLock` is what readers see. The writer publishes a chunk into it only
//! after the chunk is durable, so a view never reads bytes that a crash could take back.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rewind_formats::message::{ControlOp, ErrorCode};
use rewind_formats::segment::{ChunkHeader, ChunkKind, SegmentFooter};
use rewind_formats::{RecordKind, Seq};
use tokio::sync::{mpsc, watch};

use super::index::{DiskIndex, Source};
use super::manifest::Manifest;
use super::points::Points;
use super::segment_file::{self, LoadMode, LoadedSegment};
use super::{Result, StoreError};
use crate::fsutil;

/// What the group keeps about one journal segment.
#[derive(Debug)]
pub struct SegmentMeta {
    pub id: u64,
    pub path: PathBuf,
    /// Read handle; readers clone the Arc so a merged-away segment stays readable until they finish.
    pub file: Arc<File>,
    pub first_seq: Seq,
    /// Newest record seq in the segment (0 if it holds only tags).
    pub last_seq: Seq,
    /// Newest seq the segment mentions, tags included: it is merged away only once the horizon
    /// reaches this, so a segment holding only a tag is never mistaken for an already-merged one.
    pub max_seq: Seq,
    pub len_bytes: u64,
    pub sealed: bool,
    /// Newest source timestamp in the segment: the segment expires when this leaves the window.
    pub newest_ms: u64,
    pub chunks: usize,
    /// Journal bytes spent padding sub-block data records to whole blocks (`quota::padding_of`).
    pub padding_bytes: u64,
}

#[derive(Debug)]
pub struct GroupState {
    pub manifest: Manifest,
    pub segments: BTreeMap<u64, SegmentMeta>,
    pub indexes: Vec<DiskIndex>,
    pub points: Points,
    pub durable: Seq,
    pub bases: Vec<Arc<File>>,
}

impl GroupState {
    pub fn horizon(&self) -> Seq {
        Seq(self.manifest.horizon_seq)
    }

    pub fn journal_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len_bytes).sum()
    }

    pub fn segment_file(&self, id: u64) -> Option<Arc<File>> {
        self.segments.get(&id).map(|s| s.file.clone())
    }

    /// Records in the group's index (journal not merged yet).
    pub fn extents(&self) -> u64 {
        self.indexes.iter().map(|ix| ix.extents() as u64).sum()
    }

    /// Padding bytes in the group's journal segments.
    pub fn padding_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.padding_bytes).sum()
    }
}

/// Views pin the seqs they read: the merger never moves the horizon past the oldest pin.
#[derive(Default, Debug)]
struct Pins {
    counts: BTreeMap<u64, usize>,
    /// Horizon the merger is moving to; views older than this are refused from now on.
    merging_to: u64,
}

pub struct Group {
    pub name: String,
    pub dir: PathBuf,
    pub state: RwLock<GroupState>,
    pins: Mutex<Pins>,
    /// Newest durable seq, for sessions to turn into ACK frames.
    durable_tx: watch::Sender<Seq>,
    /// The session currently feeding this group (one at a time).
    pub session: Mutex<Option<Holder>>,
    /// A Resume a failed planned failover could not deliver (the session was gone): sent at the
    /// agent's next session, so a drain never leaves the source read-only by mistake.
    resume_owed: Mutex<Option<String>>,
    /// Serialises manifest updates (sessions, merger).
    pub manifest_lock: Mutex<()>,
    /// Chunks (batches and tags) handed to the writer, and chunks published after fdatasync. A new
    /// session resumes only once they are equal, so a batch still queued from a session that just
    /// ended is never accepted twice; a session that ends cleanly waits the same way, so an agent
    /// that sees the close knows its trailing tags are durable.
    queued_chunks: std::sync::atomic::AtomicU64,
    published_chunks: std::sync::atomic::AtomicU64,
    /// Records and padding bytes admitted but not yet published (queued for the writer): the
    /// quotas count them, so a fast sender cannot outrun the check by keeping the queue full.
    pending: Mutex<Pending>,
}

/// What batches admitted to the writer but not yet published will add (see `Group::pending`).
#[derive(Default, Debug, Clone, Copy)]
pub struct Pending {
    pub records: u64,
    pub padding_bytes: u64,
}

pub fn base_path(dir: &Path, disk: &str) -> PathBuf {
    dir.join("base").join(format!("{disk}.img"))
}

pub fn journal_dir(dir: &Path) -> PathBuf {
    dir.join("journal")
}

impl Group {
    /// Create a new group on disk: directories, sparse base images, manifest (published last, so a
    /// crash part way leaves a directory without a manifest, which loading skips and reports).
    pub fn create(dir: PathBuf, manifest: Manifest) -> Result<Arc<Group>> {
        fs::create_dir_all(dir.join("base")).map_err(StoreError::io("create directory", &dir))?;
        fs::create_dir_all(journal_dir(&dir)).map_err(StoreError::io("create directory", &dir))?;
        for d in &manifest.disks {
            let p = base_path(&dir, &d.name);
            let f = File::create(&p).map_err(StoreError::io("create base image", &p))?;
            f.set_len(d.size_bytes)
                .map_err(StoreError::io("size base image", &p))?;
            f.sync_all().map_err(StoreError::io("fsync", &p))?;
        }
        fsutil::sync_dir(&dir.join("base"))?;
        manifest.store(&dir)?;
        if let Some(parent) = dir.parent() {
            fsutil::sync_dir(parent)?;
        }
        Self::load(dir, LoadMode::Repair)
    }

    /// Load a group: manifest, base images, every segment (repairing in `Repair` mode), and rebuild
    /// indexes and points. Returns the group and the segments already merged into the base but not
    /// yet deleted (a merge interrupted by a crash), which the caller finishes.
    pub fn load(dir: PathBuf, mode: LoadMode) -> Result<Arc<Group>> {
        let manifest = Manifest::load(&dir)?;
        let name = manifest.group.clone();
        if mode == LoadMode::Repair {
            fsutil::remove_stray_tmp(&dir)?;
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
        Ok(Arc::new(Group {
            name,
            dir,
            state: RwLock::new(state),
            pins: Mutex::new(Pins::default()),
            durable_tx: watch::channel(durable).0,
            session: Mutex::new(None),
            resume_owed: Mutex::new(None),
            manifest_lock: Mutex::new(()),
            queued_chunks: std::sync::atomic::AtomicU64::new(0),
            published_chunks: std::sync::atomic::AtomicU64::new(0),
            pending: Mutex::new(Pending::default()),
        }))
    }

    pub fn durable(&self) -> Seq {
        *self.durable_tx.borrow()
    }

    /// Admitted but unpublished records and padding (for the quotas).
    pub fn pending(&self) -> Pending {
        *self.pending.lock().expect("pending lock")
    }

    /// Count a records chunk as pending until `publish` sees it (call before queueing it).
    pub fn add_pending(&self, records: u64, padding_bytes: u64) {
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

    pub fn subscribe_durable(&self) -> watch::Receiver<Seq> {
        self.durable_tx.subscribe()
    }

    pub fn next_segment_id(&self) -> u64 {
        let st = self.state.read().expect("group lock");
        st.segments.keys().next_back().map_or(1, |id| id + 1)
    }

    /// Make a durable chunk visible: index its records, note its time and tag, advance durable.
    /// Called by the writer, in seq order, only after the chunk's fdatasync completed.
    pub fn publish(&self, segment_id: u64, pos: u64, h: &ChunkHeader) {
        let mut st = self.state.write().expect("group lock");
        publish_chunk(&mut st, segment_id, pos, h);
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
    pub fn add_open_segment(&self, meta: SegmentMeta) {
        self.state
            .write()
            .expect("group lock")
            .segments
            .insert(meta.id, meta);
    }

    /// Record that a segment was sealed (its footer is durable).
    pub fn mark_sealed(&self, segment_id: u64, len_bytes: u64) {
        let mut st = self.state.write().expect("group lock");
        if let Some(meta) = st.segments.get_mut(&segment_id) {
            meta.sealed = true;
            meta.len_bytes = len_bytes;
        }
    }

    /// Discard the history after `end` (failover commit): persisted in the manifest first, then
    /// the points after it disappear and the segments holding only later records are deleted.
    /// Nothing feeds the group any more (it is fenced), so nothing can land after `end`.
    pub fn discard_after(&self, end: Seq) -> Result<()> {
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
    fn update_manifest(&self, f: impl FnOnce(&mut Manifest)) -> Result<Manifest> {
        let _l = self.manifest_lock.lock().expect("manifest lock");
        let mut m = self.state.read().expect("group lock").manifest.clone();
        f(&mut m);
        m.store(&self.dir)?;
        self.state.write().expect("group lock").manifest = m.clone();
        Ok(m)
    }

    /// Record the agent that owns the group (groups made before owners were recorded).
    pub fn set_owner(&self, agent: &str) -> Result<()> {
        self.update_manifest(|m| m.owner = Some(agent.to_string()))?;
        tracing::info!(group = %self.name, agent, "group adopted by its agent");
        Ok(())
    }

    /// Record the generation an adopted group takes from its first agent.
    pub fn set_generation(&self, generation: u64) -> Result<()> {
        self.update_manifest(|m| m.generation = generation)?;
        tracing::info!(group = %self.name, generation, "adopted group takes its first agent's generation");
        Ok(())
    }

    /// Whether the group is adopted and still holds no record: its first agent must compare
    /// every block (the base is a copy of other disks, not empty).
    pub fn adopt_pending(&self) -> bool {
        let st = self.state.read().expect("group lock");
        st.manifest.adopted && st.durable.0 == 0
    }

    /// Change the retention window; durable in the manifest before it takes effect.
    pub fn set_retention(&self, retention_ms: u64) -> Result<()> {
        self.update_manifest(|m| m.retention_ms = retention_ms)?;
        tracing::info!(group = %self.name, retention_ms, "retention changed");
        Ok(())
    }

    /// Send a CONTROL frame to the agent session currently feeding this group.
    pub fn send_control(&self, op: ControlOp, arg: &str) -> std::result::Result<(), String> {
        let out = self
            .session
            .lock()
            .expect("session lock")
            .as_ref()
            .map(|h| h.out.clone())
            .ok_or_else(|| format!("no agent is connected for group {}", self.name))?;
        let frame = rewind_formats::message::Control::frame(&self.name, op, arg);
        // try_send: never wait on a session whose writer is stuck; its queue holds 256 frames.
        out.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => format!(
                "the session of group {} is not draining its outgoing frames (queue full)",
                self.name
            ),
            mpsc::error::TrySendError::Closed(_) => {
                format!("no agent is connected for group {}", self.name)
            }
        })
    }

    /// Tell the source agent to take writes again after a drain that no promotion follows: now
    /// if it is connected, else at its next session (see `take_resume_owed`).
    pub fn resume_source(&self, tag: &str) {
        if let Err(e) = self.send_control(ControlOp::Resume, tag) {
            tracing::warn!(group = %self.name, error = %e, "resume owed to the agent at its next session");
            *self.resume_owed.lock().expect("resume lock") = Some(tag.to_string());
        }
    }

    /// The resume a failed drain still owes the agent (taken once).
    pub fn take_resume_owed(&self) -> Option<String> {
        self.resume_owed.lock().expect("resume lock").take()
    }

    /// Fence the group's current source: bump the generation (durable in the manifest before
    /// anything else), record why, and end the session feeding the group with a StaleGeneration
    /// ERROR. From then on HELLOs with the old generation are refused with the reason. Returns the
    /// new generation.
    ///
    /// A batch the old session had already queued for the writer may still become durable after
    /// this returns: wait for [`Group::drained`] before reading the group's latest state.
    pub fn fence(&self, reason: &str) -> Result<u64> {
        let new = self
            .update_manifest(|m| {
                m.generation += 1;
                m.fenced_reason = Some(reason.to_string());
            })?
            .generation;
        let old = new - 1;
        tracing::warn!(group = %self.name, old_generation = old, generation = new, reason,
            "group fenced: its source agent is refused from now on");
        if let Some(h) = self.session.lock().expect("session lock").as_ref() {
            h.stop.stop(
                ErrorCode::StaleGeneration,
                fenced_message(&self.name, Some(reason), old, new),
            );
        }
        Ok(new)
    }

    pub fn pin(self: &Arc<Self>, seq: Seq) -> Result<PinGuard> {
        let mut pins = self.pins.lock().expect("pins lock");
        let st = self.state.read().expect("group lock");
        let horizon = st.manifest.horizon_seq.max(pins.merging_to);
        if seq.0 < horizon {
            return Err(StoreError::PointTooOld {
                spec: format!("seq:{}", seq.0),
                horizon,
                detail: "the journal up to the horizon is merged into the base image".into(),
            });
        }
        *pins.counts.entry(seq.0).or_default() += 1;
        Ok(PinGuard {
            group: self.clone(),
            seq,
        })
    }

    /// Claim a merge horizon. `prefix_horizons[i]` is the horizon that merging the oldest i+1
    /// expired segments would reach (non-decreasing: merges take whole segments, oldest first).
    /// Takes the longest prefix that passes no pinned view and returns its length and horizon;
    /// views older than that horizon are refused from now on.
    pub fn claim_merge(&self, prefix_horizons: &[Seq]) -> Option<(usize, Seq)> {
        let mut pins = self.pins.lock().expect("pins lock");
        let oldest_pin = pins.counts.keys().next().copied().unwrap_or(u64::MAX);
        let n = prefix_horizons.partition_point(|h| h.0 <= oldest_pin);
        let h = *prefix_horizons.get(n.checked_sub(1)?)?;
        pins.merging_to = pins.merging_to.max(h.0);
        Some((n, h))
    }

    pub fn oldest_pin(&self) -> Option<Seq> {
        self.pins
            .lock()
            .expect("pins lock")
            .counts
            .keys()
            .next()
            .map(|s| Seq(*s))
    }
}

/// Cap a group's state at `end`: durable, points, and the segments whose records all come after
/// it (returned, for the caller to delete). Index versions after `end` stay but are never read:
/// every view reads as of a seq at or before the durable one.
fn cut_history(st: &mut GroupState, end: Seq) -> Vec<PathBuf> {
    st.durable = st.durable.min(end);
    st.points.truncate_after(end);
    let ids: Vec<u64> = st
        .segments
        .values()
        .filter(|s| s.first_seq > end && s.sealed)
        .map(|s| s.id)
        .collect();
    ids.iter()
        .filter_map(|id| st.segments.remove(id))
        .map(|s| s.path)
        .collect()
}

fn remove_segment_files(paths: &[PathBuf]) {
    for p in paths {
        if let Err(e) = fs::remove_file(p) {
            tracing::warn!(segment = %p.display(), error = %e, "cannot remove a discarded segment");
        }
    }
}

/// The session feeding a group: who it is, how to send it a frame, how to ask it to stop (when
/// the same agent reconnects before the daemon noticed its old connection die, or when the group
/// is fenced), and how to learn that it ended.
pub struct Holder {
    pub peer: String,
    pub agent: String,
    pub stop: Arc<StopSignal>,
    /// The session's outgoing frames (its writer task sends them in order).
    pub out: mpsc::Sender<Vec<u8>>,
    /// Becomes `Some(why)` when the session ends (a dropped sender means the same).
    pub ended: watch::Receiver<Option<SessionEnd>>,
}

/// How a session ended, for whoever waits on it (a drain).
#[derive(Clone, Debug)]
pub struct SessionEnd {
    pub message: String,
    /// The agent sent an ERROR frame: `message` is its text.
    pub by_agent: bool,
}

/// Asks a session to end with an ERROR of a given code: the session sends it and closes.
#[derive(Default)]
pub struct StopSignal {
    notify: tokio::sync::Notify,
    why: Mutex<Option<(ErrorCode, String)>>,
}

impl StopSignal {
    /// Ask the session to end. The first reason given wins.
    pub fn stop(&self, code: ErrorCode, message: String) {
        self.why
            .lock()
            .expect("stop lock")
            .get_or_insert((code, message));
        // notify_one keeps a permit if the session is not waiting right now.
        self.notify.notify_one();
    }

    /// Resolves once `stop` was called.
    pub async fn stopped(&self) -> (ErrorCode, String) {
        loop {
            if let Some(w) = self.why.lock().expect("stop lock").clone() {
                return w;
            }
            self.notify.notified().await;
        }
    }
}

/// What an agent at a stale generation is told (the HELLO refusal and the end of a fenced
/// session say the same). Agents recognise fencing by the word "fenced" in a StaleGeneration
/// ERROR.
/// A reason (typed by an operator) is cut to [`MAX_REASON_LEN`] bytes here, so that the whole
/// message, with the word agents look for, fits an ERROR frame's text.
pub fn fenced_message(group: &str, reason: Option<&str>, agent_gen: u64, group_gen: u64) -> String {
    match reason {
        Some(r) => format!(
            "group {group} was failed over, this agent (generation {agent_gen}) is fenced; \
             the group is at generation {group_gen} ({})",
            cut_reason(r)
        ),
        None => format!(
            "group {group} is at generation {group_gen}; this agent (generation {agent_gen}) is \
             stale (fenced)"
        ),
    }
}

/// The most bytes of a fence reason that a fenced message quotes.
pub const MAX_REASON_LEN: usize = 1024;

fn cut_reason(r: &str) -> std::borrow::Cow<'_, str> {
    if r.len() <= MAX_REASON_LEN {
        return r.into();
    }
    let mut end = MAX_REASON_LEN;
    while !r.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &r[..end], r.len()).into()
}

/// Held by a view for as long as it exists.
pub struct PinGuard {
    group: Arc<Group>,
    seq: Seq,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut pins = self.group.pins.lock().expect("pins lock");
        if let Some(n) = pins.counts.get_mut(&self.seq.0) {
            *n -= 1;
            if *n == 0 {
                pins.counts.remove(&self.seq.0);
            }
        }
    }
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(StoreError::io("read directory", dir))? {
        let e = e.map_err(StoreError::io("read directory", dir))?;
        if let Some(id) = e
            .file_name()
            .to_str()
            .and_then(segment_file::parse_segment_file_name)
        {
            out.push((id, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Add a loaded segment's chunks to the state (segments are added in id order, so seq order).
fn add_segment(st: &mut GroupState, id: u64, seg: LoadedSegment) -> Result<()> {
    let file = File::open(&seg.path).map_err(StoreError::io("open segment", &seg.path))?;
    let first_seq = seg.first_seq().unwrap_or(seg.header.first_seq);
    let last_seq = seg.last_seq().unwrap_or(Seq(0));
    let horizon = st.horizon();
    st.segments.insert(
        id,
        SegmentMeta {
            id,
            path: seg.path.clone(),
            file: Arc::new(file),
            first_seq,
            last_seq,
            max_seq: seg
                .footer
                .chunks
                .iter()
                .map(|c| c.last_seq)
                .max()
                .unwrap_or(Seq(0)),
            // An unsealed segment read offline may carry preallocated space past its data.
            len_bytes: if seg.sealed {
                seg.file_len
            } else {
                seg.data_end
            },
            sealed: seg.sealed,
            newest_ms: seg
                .footer
                .chunks
                .iter()
                .map(|c| c.timestamp_ms)
                .max()
                .unwrap_or(0),
            chunks: seg.footer.chunks.len(),
            padding_bytes: seg
                .footer
                .extents
                .iter()
                .filter(|e| e.kind == RecordKind::Data)
                .map(|e| super::quota::pad(u64::from(e.len)))
                .sum(),
        },
    );
    apply_footer(st, id, &seg.footer, horizon)?;
    st.durable = st.durable.max(last_seq);
    Ok(())
}

fn apply_footer(st: &mut GroupState, id: u64, footer: &SegmentFooter, horizon: Seq) -> Result<()> {
    let ndisks = st.indexes.len();
    for e in &footer.extents {
        if e.seq <= horizon {
            continue; // already in the base image (merge finished but segment not yet deleted)
        }
        let disk = usize::from(e.disk);
        if disk >= ndisks {
            return Err(StoreError::Invalid {
                what: "segment",
                why: format!(
                    "segment {id} names disk index {disk} but group {} has {ndisks} disks",
                    st.manifest.group
                ),
            });
        }
        let source = match e.kind {
            RecordKind::Data => Source::Segment {
                segment_id: id,
                pos: e.data_pos,
            },
            RecordKind::Zero | RecordKind::Trim => Source::Zero,
        };
        st.indexes[disk].insert(e.offset, e.len, e.seq, source);
    }
    for c in &footer.chunks {
        if c.kind == ChunkKind::Records && c.last_seq >= horizon {
            st.points.record_time(c.last_seq, c.timestamp_ms);
        }
    }
    for t in &footer.tags {
        if t.seq >= horizon {
            st.points.add_tag(t.clone());
        }
    }
    Ok(())
}

fn publish_chunk(st: &mut GroupState, segment_id: u64, pos: u64, h: &ChunkHeader) {
    match h.kind {
        ChunkKind::Records => {
            for r in &h.records {
                let source = match r.kind {
                    RecordKind::Data => Source::Segment {
                        segment_id,
                        pos: pos + r.data_pos,
                    },
                    RecordKind::Zero | RecordKind::Trim => Source::Zero,
                };
                st.indexes[usize::from(r.disk)].insert(r.offset, r.len, r.seq, source);
            }
            st.points.record_time(h.last_seq, h.timestamp_ms);
            st.durable = st.durable.max(h.last_seq);
        }
        ChunkKind::Tag => {
            if let Some(t) = &h.tag {
                st.points.add_tag(t.clone());
            }
        }
    }
    if let Some(meta) = st.segments.get_mut(&segment_id) {
        if h.kind == ChunkKind::Records {
            meta.last_seq = meta.last_seq.max(h.last_seq);
        }
        meta.max_seq = meta.max_seq.max(h.last_seq);
        meta.newest_ms = meta.newest_ms.max(h.timestamp_ms);
        meta.chunks += 1;
        meta.padding_bytes += super::quota::padding_of(h);
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
    fn pins_hold_back_the_merge_horizon() {
        let (_dir, g) = group();
        let pin = g.pin(Seq(5)).unwrap();
        assert_eq!(
            g.claim_merge(&[Seq(4), Seq(10)]),
            Some((1, Seq(4))),
            "merge stops before the segment holding the oldest pin"
        );
        assert_eq!(g.claim_merge(&[Seq(6)]), None);
        assert!(
            g.pin(Seq(3)).is_err(),
            "a view older than a claimed horizon is refused"
        );
        assert!(g.pin(Seq(5)).is_ok());
        drop(pin);
        assert_eq!(g.oldest_pin(), None);
        assert_eq!(g.claim_merge(&[Seq(10)]), Some((1, Seq(10))));
        assert!(matches!(g.pin(Seq(9)), Err(StoreError::PointTooOld { .. })));
    }

    #[test]
    fn fence_bumps_the_generation_durably_and_stops_the_session() {
        let (_dir, g) = group();
        let stop = Arc::new(StopSignal::default());
        let (out, _rx) = mpsc::channel(4);
        let (_end_tx, ended) = watch::channel(None);
        *g.session.lock().unwrap() = Some(Holder {
            peer: "p".into(),
            agent: "a".into(),
            stop: stop.clone(),
            out,
            ended,
        });
        g.send_control(ControlOp::Drain, "pf").unwrap();
        assert_eq!(g.fence("planned failover at seq 7").unwrap(), 2);
        let (code, why) = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(stop.stopped());
        assert_eq!(code, ErrorCode::StaleGeneration);
        assert!(
            why.contains("fenced") && why.contains("planned failover at seq 7"),
            "{why}"
        );
        let m = Manifest::load(&g.dir).unwrap();
        assert_eq!(m.generation, 2);
        assert_eq!(
            m.fenced_reason.as_deref(),
            Some("planned failover at seq 7")
        );
        *g.session.lock().unwrap() = None;
        assert_eq!(
            g.send_control(ControlOp::Drain, "pf").unwrap_err(),
            "no agent is connected for group g"
        );
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
