//! The sender: one thread that keeps a session with the target, streams the queue in seq order
//! as zstd-compressed BATCH frames (and TAG frames), and frees records as ACKs arrive.
//!
//! Each session starts with HELLO (the disks and their sizes, the last seq we saw acked) and
//! WELCOME (the target's durable seq). Everything after the durable seq is sent again, so a
//! broken connection loses nothing: the sender reconnects with exponential backoff and resumes.
//! A second thread per session reads ACKs; it never blocks the sender. It also takes the
//! target's CONTROL frames: a drain is recorded for the agent's drain thread (see [`crate::drain`]),
//! and one that cannot be done is answered with an ERROR, which the sender sends.
//!
//! A Fenced refusal (the group failed over) ends the sender for good:
//! see [`crate::drain::fence`].
//!
//! What the rest of the agent learns from the link travels on channels ([`crate::stream::link`]):
//! the sync thread gets the first WELCOME and any loss at the target, the status writer whether
//! a session is up.

mod frame;
mod reader;
mod session;
pub mod targets;
mod welcomed;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewind_formats::{DiskInfo, Hashes, Message, Seq};

use crate::config::Settings;
use crate::drain::{self, DrainCtl, WriteGate};
use crate::error::{Error, Result};
use crate::metrics::report::ReportSlot;
use crate::state::StateDir;
use crate::stream::levels::Levels;
use crate::stream::link::{LinkEvent, Outbox, SyncEvent};
use crate::stream::queue::Queue;
use crate::stream::ratelimit::RateLimit;
use crate::stream::wire::Conn;
use crate::sync::dirty::DirtyMap;
use crate::sync::hashclient::HashRequests;

/// Largest batch: records and their data (uncompressed). Big enough to amortise a frame, small
/// enough that an ACK frees memory often.
const BATCH_MAX_BYTES: u64 = 8 << 20;
const BATCH_MAX_RECORDS: usize = 4096;
/// Most batches compressed at once.
const MAX_COMPRESSORS: usize = 4;
/// How long the sender waits for new records before checking for stop or a dead session.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// When fewer than [`LINGER_RECORDS`] records wait, the sender waits this long for more before
/// building a batch: a stream of small writes then travels in a few big batches (one zstd frame,
/// one target group commit each) instead of one batch per write. Adds at most this to the lag.
const LINGER: Duration = Duration::from_millis(2);
const LINGER_RECORDS: usize = 256;
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The sender thread and what it works with.
pub struct Sender {
    pub settings: Arc<Settings>,
    /// The targets to try, and the one in use.
    pub targets: targets::Targets,
    /// Where the fence is recorded.
    pub state: StateDir,
    pub disks: Vec<DiskInfo>,
    pub queue: Arc<Queue>,
    /// Every region is pinned here when the target turns out to have lost data.
    pub dirty: Arc<DirtyMap>,
    /// The resync's HASHES requests: sent here, answered to the ACK reader.
    pub hashes: Arc<HashRequests>,
    pub limit: Arc<RateLimit>,
    pub levels: Arc<Levels>,
    /// The last seq the target acknowledged in an earlier run (`STATE_DIR/GROUP.acked`, read at
    /// start before anything rewrites it).
    pub acked_before: Option<Seq>,
    /// What each session's ACK reader does with CONTROL frames (and the gate a fence closes).
    pub control: Control,
    /// Frames other threads ask the sender to send (see [`Outbox`]).
    pub answers: mpsc::Receiver<Message>,
    pub sync_events: mpsc::Sender<SyncEvent>,
    pub link_events: mpsc::Sender<LinkEvent>,
    /// The newest report on the group for the target (CONTROL op report), from the status
    /// writer.
    pub reports: Arc<ReportSlot>,
    /// Set at shutdown (with the queue stopped, which wakes the sender).
    pub stop: Arc<AtomicBool>,
}

/// What the target's CONTROL frames act on: drains (see [`crate::drain`]) and policies.
#[derive(Clone)]
pub struct Control {
    pub drain: Arc<DrainCtl>,
    pub gate: Arc<WriteGate>,
    /// Refusals go back to the target through here.
    pub outbox: Outbox,
    /// Where a CONTROL Policy goes (see [`crate::policy`]).
    pub policy: Arc<crate::policy::PolicyCtl>,
    /// Where a CONTROL verify request goes (see [`crate::sync::verify`]).
    pub verify: Arc<crate::sync::verify::VerifyCtl>,
}

impl Sender {
    pub fn spawn(self) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sender".into())
            .spawn(move || self.run())
            .map_err(Error::path("starting the sender thread", "-"))
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Tells the status writer (gone at shutdown: nothing to tell then).
    fn link_event(&self, e: LinkEvent) {
        let _ = self.link_events.send(e);
    }

    fn run(self) {
        let mut backoff = BACKOFF_MIN;
        while !self.stopping() {
            let t0 = Instant::now();
            let r = self.session();
            if self.stopping() {
                self.link_event(LinkEvent::Disconnected(None));
                break;
            }
            if let Some(reason) = r.as_ref().err().and_then(drain::is_fencing) {
                self.fenced(reason);
                return;
            }
            match r {
                Ok(()) => self.link_event(LinkEvent::Disconnected(None)),
                Err(e) => {
                    tracing::warn!(group = %self.settings.group, target = %self.targets.current(),
                        error = %e, retry_in_ms = backoff.as_millis() as u64, "session with the target ended");
                    self.link_event(LinkEvent::Disconnected(Some(e.to_string())));
                    if let Some(next) = self.targets.failed() {
                        tracing::warn!(group = %self.settings.group, %next,
                            attempts = targets::ATTEMPTS_PER_TARGET,
                            "the target failed repeatedly: moving to the next one");
                        self.link_event(LinkEvent::Target(next.to_string()));
                        backoff = BACKOFF_MIN;
                        continue;
                    }
                }
            }
            // A session that lasted a while was healthy: start the backoff over.
            if t0.elapsed() > BACKOFF_MAX * 3 {
                backoff = BACKOFF_MIN;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.stopping() {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// The target refused this agent for good: the group failed over. The sender does not
    /// reconnect (see [`drain::fence`] for the rest).
    fn fenced(&self, reason: &str) {
        let s = &self.settings;
        drain::fence(&self.control.gate, &self.state, &s.group, reason);
        self.link_event(LinkEvent::Disconnected(Some(format!("fenced: {reason}"))));
        tracing::error!(group = %s.group, target = %self.targets.current(), %reason,
            file = %self.state.fenced_file().display(),
            "FENCED: the target no longer takes this agent as the group's source (the group \
             failed over); not reconnecting, and the disks refuse writes (EROFS)");
    }

    /// Sends the answers to CONTROL frames; an ERROR ends the session (as the protocol says),
    /// except a refused policy's or tag request's, which the target records and goes on from.
    fn send_outbox(&self, conn: &mut Conn) -> Result<()> {
        for m in self.answers.try_iter() {
            self.send(conn, &m.to_frame())?;
            if let Message::Error(e) = m {
                if !e.ends_session() {
                    continue;
                }
                return Err(Error::Connection {
                    addr: self.targets.current().to_string(),
                    why: format!(
                        "closed after refusing the target's request ({:?}: {})",
                        e.code, e.message
                    ),
                });
            }
        }
        Ok(())
    }

    /// Sends the newest report on the group, if one waits (see [`crate::metrics::report`]).
    fn send_report(&self, conn: &mut Conn) -> Result<()> {
        if let Some(r) = self.reports.take() {
            let frame = rewind_formats::message::Control::frame(
                self.settings.group.as_str(),
                rewind_formats::message::ControlOp::Report,
                &r.to_arg(),
            );
            self.send(conn, &frame)?;
        }
        Ok(())
    }

    /// Sends the resync's pending HASHES requests (the target answers with its own hashes).
    fn send_hash_requests(&self, conn: &mut Conn) -> Result<()> {
        for r in self.hashes.take_unsent() {
            let frame = Message::Hashes(Hashes {
                group: self.settings.group.to_string(),
                disk: r.disk,
                offset: r.offset,
                block_size: r.block_size,
                // The target answers with as many hashes as asked for; ours are not needed.
                hashes: vec![0; r.blocks as usize],
            })
            .to_frame();
            self.send(conn, &frame)?;
        }
        Ok(())
    }

    /// Writes one frame; a failure is the connection's.
    fn send(&self, conn: &mut Conn, frame: &[u8]) -> Result<()> {
        conn.write_all(frame).map_err(|e| Error::Connection {
            addr: self.targets.current().to_string(),
            why: format!("sending: {e}"),
        })
    }
}
