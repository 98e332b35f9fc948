//! What the sender tells the rest of the agent, and what the rest asks it to send: channels, so
//! that each thread owns what it knows instead of sharing flags.
//!
//! Each event stands for a change a flag used to hold: the receiver drains every event before
//! it decides, so a change made before it looks is never missed (a flag set twice before it was
//! read is two events, both drained: the receiver folds them into one), and the order is the
//! order in which the sender made them.

use std::sync::mpsc;
use std::sync::Arc;

use rewind_formats::{ErrorCode, ErrorMsg, Message, Seq};

use crate::stream::loss::Repair;
use crate::stream::queue::Queue;

/// From the sender to the sync thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// The first WELCOME of this run, sent once the queue's base is set: the target's durable
    /// seq then, and whether every block must be compared (an adopted replica: "resync needed"
    /// with nothing durable; a fresh initial sync, which skips zero blocks, would be wrong).
    Welcomed { durable: Seq, compare_all: bool },
    /// The target turned out to have lost acknowledged records: the sender renumbered the
    /// stream, pinned every region (or, for a relay's lost stretch, the dirty ones) and opened
    /// the window; the sync thread runs the pass.
    TargetLost(Repair),
}

/// From the sender to the status writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A session started: the last error is cleared.
    Connected,
    /// The session ended; with why, if it failed (or the agent was fenced).
    Disconnected(Option<String>),
    /// The sender tries this target now (one of several, see `stream::sender::targets`).
    Target(String),
}

/// Frames for the sender to send in the current session: answers to the target's CONTROL
/// frames (an ERROR, after which the session ends). Cloned by every thread that answers.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    /// Poked to wake the sender.
    queue: Arc<Queue>,
}

impl Outbox {
    /// The outbox, and the sender's end of it.
    pub fn new(queue: Arc<Queue>) -> (Outbox, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel();
        (Outbox { tx, queue }, rx)
    }

    /// Sends `m` in the current session (a verify report); lost if the session ends first.
    pub fn send(&self, m: Message) {
        let _ = self.tx.send(m);
        self.queue.poke();
    }

    /// Tells the target (in the current session) that something it asked for cannot be done;
    /// the session then ends, as after any ERROR (but a refused policy's: see
    /// [`rewind_formats::policy::REFUSED_PREFIX`]).
    pub fn send_error(&self, code: ErrorCode, message: String) {
        // (A sender that has stopped has no session to answer in.)
        let _ = self.tx.send(Message::Error(ErrorMsg { code, message }));
        self.queue.poke();
    }
}
