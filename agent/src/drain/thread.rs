//! The drain thread: does the drains the target asks for. Refuse new writes, let the admitted
//! ones be recorded, let a running sync finish, tag the last seq (Failover), and wait for the
//! target to acknowledge the tag. A drain that cannot be done is answered with an ERROR and
//! writes are admitted again (no failover follows it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_formats::{ErrorCode, Seq, TagKind};

use super::{DrainCtl, WriteGate};
use crate::error::Error;
use crate::now_ms;
use crate::state::status::SyncState;
use crate::stream::link::Outbox;
use crate::stream::queue::Queue;
use crate::sync::dirty::DirtyMap;
use crate::sync::progress::SyncStatus;

/// How often the waits look for a Resume, a fence or shutdown.
const POLL: Duration = Duration::from_millis(100);
/// How long a tag the queue refuses (other than for a sync or bitmap mode) is retried before
/// the drain fails.
const DRAIN_TAG_RETRY: Duration = Duration::from_secs(2);

/// What the drain thread works with.
pub struct Drainer {
    pub group: String,
    pub queue: Arc<Queue>,
    /// Pinned regions mean a sync is still to run (the sender pins every region when the
    /// target lost data, before the sync thread learns of it).
    pub dirty: Arc<DirtyMap>,
    pub sync: Arc<SyncStatus>,
    pub gate: Arc<WriteGate>,
    pub requests: Arc<DrainCtl>,
    /// Where a failed drain's ERROR goes.
    pub outbox: Outbox,
    pub stop: Arc<AtomicBool>,
}

enum DrainEnd {
    /// The target gave the drain up (Resume) or asked for another.
    Superseded,
    /// The target fenced the agent (the group failed over).
    Fenced,
    Stopping,
    Failed(String),
}

impl Drainer {
    pub fn run(self) {
        while !self.stop.load(Ordering::SeqCst) {
            let Some((tag, epoch, resend)) = self.requests.next(POLL) else {
                continue;
            };
            let group = &self.group;
            if resend {
                tracing::info!(%group, %tag, "drain asked again: its tag is sent again");
            } else {
                tracing::warn!(%group, %tag, "DRAIN: writes are refused from now on; sending \
                    everything captured, then tagging the last seq");
            }
            match self.drain_once(&tag, epoch) {
                Ok(seq) => {
                    self.requests.done(epoch, &tag, seq);
                    tracing::warn!(%group, %tag, %seq, "DRAINED: the target holds every write \
                        up to the tag; writes stay refused");
                }
                Err(DrainEnd::Superseded) => {
                    tracing::info!(%group, %tag, "drain given up by the target or replaced");
                }
                Err(DrainEnd::Fenced) => {
                    // Nothing more to send: the drain ends here (writes stay refused: fenced).
                    self.requests.failed(epoch, &self.gate);
                    tracing::warn!(%group, %tag, "drain ended: the agent was fenced");
                }
                Err(DrainEnd::Stopping) => return,
                Err(DrainEnd::Failed(why)) => {
                    self.requests.failed(epoch, &self.gate);
                    tracing::error!(%group, %tag, %why, "drain failed: writes are accepted again");
                    self.outbox
                        .send_error(ErrorCode::Internal, format!("drain {tag}: {why}"));
                }
            }
        }
    }

    /// Checked between every wait: a Resume or a fence ends this drain, shutdown too.
    fn check(&self, epoch: u64) -> Result<(), DrainEnd> {
        if self.stop.load(Ordering::SeqCst) {
            Err(DrainEnd::Stopping)
        } else if self.gate.fenced().is_some() {
            Err(DrainEnd::Fenced)
        } else if !self.requests.current(epoch) {
            Err(DrainEnd::Superseded)
        } else {
            Ok(())
        }
    }

    fn drain_once(&self, tag: &str, epoch: u64) -> Result<Seq, DrainEnd> {
        if !self.requests.begin(epoch, &self.gate, tag) {
            return Err(DrainEnd::Superseded);
        }
        // Writes admitted before the gate closed finish and are recorded: the tag goes after.
        while !self.gate.wait_idle(POLL) {
            self.check(epoch)?;
        }
        // A tag inside a sync (or with writes dropped in bitmap mode) would not be recoverable:
        // as `rewind-agent tag` does, wait for it to finish. With writes refused, it does.
        let mut said = false;
        loop {
            self.check(epoch)?;
            let state = self.sync.get().state;
            let busy = self.queue.overflowing()
                || self.dirty.pinned_count() > 0
                || matches!(
                    state,
                    SyncState::Pending
                        | SyncState::Running
                        | SyncState::Acking
                        | SyncState::Bitmap
                        | SyncState::Failed
                );
            if !busy {
                break;
            }
            if !said {
                tracing::info!(group = %self.group, ?state, "drain: waiting for the sync to finish");
                said = true;
            }
            std::thread::sleep(POLL);
        }
        // The queue refuses a tag while a sync window is still open (its end not yet queued):
        // retried; any other refusal for a while fails the drain.
        let t0 = Instant::now();
        let (id, seq) = loop {
            self.check(epoch)?;
            match self.queue.push_tag(tag, TagKind::Failover, now_ms()) {
                Ok(r) => break r,
                Err(Error::Stopping) => return Err(DrainEnd::Stopping),
                Err(e) if t0.elapsed() > DRAIN_TAG_RETRY => {
                    return Err(DrainEnd::Failed(e.to_string()))
                }
                Err(_) => std::thread::sleep(POLL),
            }
        };
        let Some(seq) = seq else {
            // (A drain comes from a session, which set the base: not expected.)
            return Err(DrainEnd::Failed(
                "the tag has no seq: the agent has not reached the target".into(),
            ));
        };
        tracing::info!(group = %self.group, tag, %seq, "drain: tag queued after the last captured write");
        while !self.queue.wait_tag(id, POLL) {
            self.check(epoch)?;
        }
        Ok(seq)
    }
}
