//! The status writer: gathers what every part of the agent shows into `status.json`, a few
//! times a second and once more at shutdown.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::backing::Backing;
use crate::config::Settings;
use crate::drain::{DrainCtl, DrainState, WriteGate};
use crate::now_ms;
use crate::state::status::{self, DiskStatus, Status, SyncState};
use crate::state::StateDir;
use crate::stream::link::LinkEvent;
use crate::stream::queue::Queue;
use crate::stream::seq::SeqBase;
use crate::sync::dirty::DirtyMap;
use crate::sync::progress::{SyncProgress, SyncStatus};

const STATUS_INTERVAL: Duration = Duration::from_millis(200);

/// What the status file says of the link, folded from the sender's events.
pub struct LinkView {
    events: Receiver<LinkEvent>,
    connected: bool,
    last_error: Option<String>,
    /// The target the sender tries now (None: the first, before any attempt).
    target: Option<String>,
    /// `connected`, for the metrics (updated with the status file).
    shared: Arc<AtomicBool>,
}

impl LinkView {
    pub fn new(events: Receiver<LinkEvent>) -> LinkView {
        LinkView {
            events,
            connected: false,
            last_error: None,
            target: None,
            shared: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that follows `connected` (as of the last status write).
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared)
    }

    /// Applies every event sent so far, in order.
    fn update(&mut self) {
        for e in self.events.try_iter() {
            match e {
                LinkEvent::Connected => {
                    self.connected = true;
                    self.last_error = None;
                }
                LinkEvent::Target(t) => self.target = Some(t),
                LinkEvent::Disconnected(why) => {
                    self.connected = false;
                    if why.is_some() {
                        self.last_error = why;
                    }
                }
            }
        }
        self.shared.store(self.connected, Ordering::Relaxed);
    }
}

/// The status writer and what it reads.
pub struct StatusWriter {
    pub settings: Arc<Settings>,
    pub state: StateDir,
    pub queue: Arc<Queue>,
    pub dirty: Arc<DirtyMap>,
    pub disks: Vec<Arc<Backing>>,
    /// Each disk's loop device and the link to it.
    pub devices: Vec<(PathBuf, PathBuf)>,
    pub progress: Arc<[SyncProgress]>,
    pub sync: Arc<SyncStatus>,
    pub drain: Arc<DrainCtl>,
    /// Tells whether the agent is fenced.
    pub gate: Arc<WriteGate>,
    pub link: LinkView,
    /// The policy from the target: shown, and its bandwidth schedule followed.
    pub policy: Arc<crate::policy::PolicyCtl>,
    /// What the metrics see of the group, and where the report for the target goes.
    pub sources: Arc<crate::metrics::Sources>,
    pub reports: Arc<crate::metrics::report::ReportSlot>,
}

impl StatusWriter {
    /// Writes the status until `stop`; returns itself for the last write at shutdown.
    pub fn run(mut self, stop: &AtomicBool) -> StatusWriter {
        while !stop.load(Ordering::SeqCst) {
            self.write();
            std::thread::sleep(STATUS_INTERVAL);
        }
        self
    }

    pub fn write(&mut self) {
        self.link.update();
        self.policy.tick();
        if let Err(e) = self.state.write_status(&self.status()) {
            tracing::warn!(error = %e, "writing the status file");
        }
        if self
            .reports
            .offer(crate::metrics::report::report(&self.sources))
        {
            // Wake the sender, which may be waiting for records.
            self.queue.poke();
        }
    }

    fn status(&self) -> Status {
        let q = self.queue.stats();
        let base = q.base.unwrap_or(SeqBase(0));
        let sync = self.sync.get();
        let dirty = self.dirty.stats();
        let disks = self
            .disks
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let p = &self.progress[i];
                let done = p.done_bytes.load(Ordering::Relaxed);
                let total = p.total_bytes.load(Ordering::Relaxed);
                let percent = match sync.state {
                    SyncState::NotNeeded | SyncState::Done => 100.0,
                    SyncState::Pending => 0.0,
                    _ if total == 0 => 100.0,
                    _ => (done as f64 * 100.0 / total as f64).min(100.0),
                };
                let (device, link) = self.devices.get(i).cloned().unwrap_or_default();
                DiskStatus {
                    name: d.name.clone(),
                    path: d.path.clone(),
                    device,
                    link,
                    size_bytes: d.size_bytes,
                    sync_percent: (percent * 10.0).round() / 10.0,
                    sync_sent_bytes: p.sent_bytes.load(Ordering::Relaxed),
                }
            })
            .collect();
        let scanned: u64 = self
            .progress
            .iter()
            .map(|p| p.done_bytes.load(Ordering::Relaxed))
            .sum();
        let sync_bytes_per_sec = sync.started.and_then(|start| {
            let secs = sync
                .ended
                .unwrap_or_else(Instant::now)
                .duration_since(start)
                .as_secs_f64();
            // (A pass over holes ends in microseconds: no meaningful rate.)
            (secs >= 0.1).then(|| (scanned as f64 / secs) as u64)
        });
        // One snapshot of the drain for both fields.
        let (draining, drained) = match self.drain.state() {
            DrainState::Draining { tag } => (Some(tag), None),
            DrainState::Drained { tag, seq } => (None, Some(status::Drained { tag, seq: seq.0 })),
            _ => (None, None),
        };
        let s = &self.settings;
        Status {
            group: s.group.to_string(),
            // The one in use, of the several the agent may list.
            target: self
                .link
                .target
                .clone()
                .unwrap_or_else(|| s.target.to_string()),
            pid: std::process::id(),
            updated_ms: now_ms(),
            connected: self.link.connected,
            last_error: self.link.last_error.clone(),
            last_seq: base.wire(q.last_seq).0,
            acked_seq: base.wire(q.acked_seq).0,
            target_durable_seq: q.target_durable.map(|s| s.0),
            caught_up: q.base.is_some() && q.entries == 0,
            queued_bytes: q.queued_bytes,
            spooled_bytes: q.spooled_bytes,
            spool_capacity_bytes: q.spool_capacity,
            bitmap_mode: q.overflow,
            dropped_writes: q.dropped,
            dirty_regions: dirty.dirty,
            pinned_regions: dirty.pinned,
            compared_regions: self
                .progress
                .iter()
                .map(|p| p.compared_regions.load(Ordering::Relaxed))
                .sum(),
            resent_regions: self
                .progress
                .iter()
                .map(|p| p.resent_regions.load(Ordering::Relaxed))
                .sum(),
            last_loss_repair: sync.last_loss.map(|r| r.name().to_string()),
            lag_ms_p50: q.lag_ms.map(|l| l.0),
            lag_ms_p99: q.lag_ms.map(|l| l.1),
            lag_ms_max: q.lag_ms.map(|l| l.2),
            sync: sync.state,
            sync_kind: sync.kind.map(str::to_string),
            sync_bytes_per_sec,
            generation: s.generation,
            draining,
            drained,
            fenced: self.gate.fenced(),
            policy: self.policy.label(),
            disks,
        }
    }
}
