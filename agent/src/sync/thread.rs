//! The sync thread: keeps the target level with the disks. The initial sync, the partial resync
//! of the regions a crash left dirty, and the resync after bitmap mode or a target that lost
//! data. Each pass sits in a window (SyncBegin to SyncEnd) whose points the target reports as not
//! recoverable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::{Seq, TagKind};

use crate::capture::Capture;
use crate::error::{Error, Result};
use crate::now_ms;
use crate::state::status::SyncState;
use crate::state::StateDir;
use crate::stream::link::SyncEvent;
use crate::stream::queue::Queue;
use crate::stream::seq::LocalSeq;
use crate::sync::dirty::{DirtyMap, REGION};
use crate::sync::hashclient::HashRequests;
use crate::sync::pass::{Outcome, Pass, RESYNC_TAG, SYNC_TAG};
use crate::sync::progress::{SyncProgress, SyncStatus};

/// How often the sync thread looks for work while idle.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// A failed pass is retried after this many idle polls (5 s).
const RETRY_POLLS: usize = 50;

/// What the sync thread works with.
pub struct SyncThread {
    pub group: String,
    /// The window file.
    pub state: StateDir,
    /// The disks, the queue and the dirty-region map (the passes read under its range locks).
    pub capture: Arc<Capture>,
    /// The dirty-region map was found valid at start (else every region is compared).
    pub dirty_valid: bool,
    pub hashes: Arc<HashRequests>,
    /// From the sender: the first WELCOME, and losses at the target.
    pub events: Receiver<SyncEvent>,
    pub status: Arc<SyncStatus>,
    pub progress: Arc<[SyncProgress]>,
    /// The policy's sync window (see [`crate::sync::window`]).
    pub window: crate::sync::window::SyncWindow,
    pub stop: Arc<AtomicBool>,
    /// A [`SyncEvent::TargetLost`] received and not yet acted on.
    pub lost: bool,
}

/// Opens a resync window: durably noted first, so a crash before its SyncEnd is acknowledged
/// closes it at the next start.
pub fn open_window(queue: &Queue, state: &StateDir, name: &str) -> Result<()> {
    queue.open_window(name);
    state.record_window()
}

/// At start: regions that may differ from the target (a crash, or no valid map), or a window an
/// earlier run left open, make the target's points inconsistent from the first record this run
/// sends until they are resynced.
pub fn open_window_at_start(
    group: &str,
    queue: &Queue,
    dirty: &DirtyMap,
    dirty_valid: bool,
    state: &StateDir,
) -> Result<()> {
    let pinned = dirty.stats().pinned;
    if pinned > 0 || state.window_open() {
        let name = if dirty_valid { RESYNC_TAG } else { SYNC_TAG };
        tracing::info!(%group, regions = pinned, kind = name, "regions to compare with the target");
        open_window(queue, state, name)?;
    }
    Ok(())
}

impl SyncThread {
    fn queue(&self) -> &Queue {
        &self.capture.queue
    }

    fn dirty(&self) -> &DirtyMap {
        &self.capture.dirty
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn on_event(&mut self, e: SyncEvent) -> Option<(Seq, bool)> {
        match e {
            SyncEvent::Welcomed {
                durable,
                compare_all,
            } => Some((durable, compare_all)),
            SyncEvent::TargetLost(repair) => {
                self.status.target_lost(repair);
                self.lost = true;
                None
            }
        }
    }

    /// Waits up to `timeout` for an event from the sender; returns a WELCOME's.
    fn wait_event(&mut self, timeout: Duration) -> Option<(Seq, bool)> {
        match self.events.recv_timeout(timeout) {
            Ok(e) => self.on_event(e),
            Err(RecvTimeoutError::Timeout) => None,
            // The sender has ended (fenced): no more events, only the stop to wait for.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                None
            }
        }
    }

    /// Takes the events that arrived: whether the target lost data is then in `self.lost`.
    fn poll_events(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.on_event(e);
        }
    }

    pub fn run(mut self) {
        // The first WELCOME decides: the target's durable seq, and whether it is adopted.
        let (durable, compare_all) = loop {
            if self.stopping() {
                return;
            }
            if let Some(w) = self.wait_event(IDLE_POLL) {
                break w;
            }
        };
        // An adopted target (resync needed, nothing durable) holds a copy of other disks: compare.
        let mut fresh = durable == Seq(0) && !compare_all;
        // (Into an adopted target every pass is a compare: a resync, whatever the local state.)
        let mut name = if (fresh || !self.dirty_valid) && !compare_all {
            SYNC_TAG
        } else {
            RESYNC_TAG
        };
        let group = self.group.clone();
        // (A target that lost acknowledged data is found by the sender: see `lost` below.)
        if fresh {
            // Fresh: the target has nothing, every region is sent (no compare needed).
            if let Err(e) = self.dirty().pin_all() {
                tracing::error!(%group, error = %e, "initial sync cannot start");
                self.status.set_state(SyncState::Failed);
                return;
            }
        }
        // A window an earlier run left open at the target is closed by this run's SyncEnd.
        let mut ran = self.state.window_open();
        loop {
            if self.stopping() {
                return;
            }
            self.poll_events();
            if std::mem::take(&mut self.lost) {
                // The sender renumbered the stream (Queue::rebase), opened the window and pinned
                // every region; the window is recorded here.
                self.open_window(RESYNC_TAG);
                name = RESYNC_TAG;
                fresh = false;
                ran = true;
            }
            if self.queue().overflowing() {
                self.status.set_state(SyncState::Bitmap);
                tracing::warn!(%group, "bitmap mode: waiting for the target to catch up, then \
                    the dirty regions are resynced");
                self.open_window(RESYNC_TAG);
                name = RESYNC_TAG;
                while !self.queue().end_overflow() {
                    if self.stopping() {
                        return;
                    }
                    std::thread::sleep(IDLE_POLL);
                }
                ran = true;
            }
            let regions = self.dirty().pinned();
            if regions.is_empty() {
                if ran {
                    if !self.close_window(name) {
                        continue; // bitmap mode, a loss at the target, or stopping
                    }
                    tracing::info!(%group, kind = name,
                        "sync complete and acknowledged: the target's latest point is consistent");
                    self.status.set_state(SyncState::Done);
                    ran = false;
                } else if self.status.get().state == SyncState::Pending {
                    tracing::info!(%group, "no region differs from the target: no sync needed");
                    self.status.set_state(SyncState::NotNeeded);
                }
                while !self.queue().overflowing()
                    && !self.lost
                    && self.dirty().pinned_count() == 0
                    && !self.stopping()
                {
                    self.wait_event(IDLE_POLL);
                }
                continue;
            }
            self.open_window(name);
            ran = true;
            self.status.started(name);
            let bytes = regions.len() as u64 * REGION;
            tracing::info!(%group, kind = name, fresh, regions = regions.len(), bytes,
                "sync pass started");
            let pass = Pass {
                capture: &self.capture,
                dirty: &self.capture.dirty,
                hashes: &self.hashes,
                progress: &self.progress,
                stop: &self.stop,
                window: &self.window,
            };
            if compare_all && self.queue().last_seq() == LocalSeq(0) {
                if let Err(e) = pass.resend_first_block() {
                    tracing::warn!(%group, error = %e, "cannot give the adopted target its first record");
                }
            }
            let result = pass.run(&regions, fresh);
            self.status.ended();
            let sent: u64 = self
                .progress
                .iter()
                .map(|p| p.sent_bytes.load(Ordering::Relaxed))
                .sum();
            match result {
                Ok(Outcome::Done) => {
                    tracing::info!(%group, kind = name, sent_bytes = sent, "sync pass done");
                    fresh = false;
                }
                Ok(Outcome::Overflow) => {
                    tracing::warn!(%group, kind = name, "sync pass cut short by bitmap mode");
                    fresh = false;
                }
                Err(Error::Stopping) => return,
                Err(e) => {
                    tracing::error!(%group, error = %e, "sync pass failed; retrying in 5 s");
                    self.status.set_state(SyncState::Failed);
                    for _ in 0..RETRY_POLLS {
                        if self.stopping() {
                            return;
                        }
                        std::thread::sleep(IDLE_POLL);
                    }
                }
            }
        }
    }

    fn open_window(&self, name: &str) {
        if let Err(e) = open_window(self.queue(), &self.state, name) {
            tracing::error!(error = %e, "recording the resync window");
        }
    }

    /// Closes the window and waits for its SyncEnd to be acknowledged. False if bitmap mode
    /// began, the target lost data or the agent is stopping first.
    fn close_window(&mut self, name: &str) -> bool {
        let id = match self.queue().close_window(name) {
            Some(id) => Some(id),
            // No record since the window opened: the SyncEnd names the last seq there is (a
            // window an earlier run left open at the target ends here too).
            None => match self.queue().push_tag(name, TagKind::SyncEnd, now_ms()) {
                Ok((id, _)) => Some(id),
                Err(Error::Stopping) => return false,
                // Nothing was ever written: the target has no window open.
                Err(_) => None,
            },
        };
        self.status.set_state(SyncState::Acking);
        if let Some(id) = id {
            while !self.queue().wait_tag(id, IDLE_POLL) {
                self.poll_events();
                if self.stopping() || self.queue().overflowing() || self.lost {
                    return false;
                }
            }
        }
        self.state.clear_window();
        true
    }
}
