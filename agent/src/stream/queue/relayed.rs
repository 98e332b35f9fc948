//! Through a relay (`rewind-mtd relay`), an ACK says the relay's cache holds the records (they
//! have left this host); the master target's own durable seq comes in a CONTROL target-durable.
//! The queue frees records at the relay's ACK as before (the relay keeps them), and remembers
//! when the acknowledged records were written until the target holds them, so that the RPO is
//! measured to the master target, not to the relay.
//!
//! The dirty-region map must not clear a region before the master target holds it: a relay that
//! dies with acknowledged but unforwarded records leaves them nowhere but on the source disk.
//! So the queue keeps the target's durable seq in local numbering too, and the clear thread
//! clears only up to [`QueueStats::target_acked`](super::QueueStats). Whether a session's peer is
//! a relay is told by its first frames: a relay sends CONTROL target-durable right after its
//! WELCOME, before any ACK; an ACK that comes first is the master target's own.

use std::collections::VecDeque;
use std::time::Instant;

use rewind_formats::Seq;

use super::{Inner, Queue};
use crate::stream::seq::LocalSeq;

/// What the queue knows of the master target behind a relay.
#[derive(Default)]
pub(super) struct Relayed {
    /// The master target's durable seq (wire), once a relay said it (None: no relay).
    pub(super) target: Option<Seq>,
    /// Acknowledged by the relay, not yet by the target: (last local seq of an ACK, when its
    /// oldest record was written), oldest first.
    pub(super) waiting: VecDeque<(LocalSeq, Instant)>,
    /// The master target's durable seq in local numbering (None: the peer is the target).
    pub(super) target_local: Option<LocalSeq>,
    /// Whether this session's peer said what the target holds (it is a relay).
    pub(super) told_this_session: bool,
}

impl Relayed {
    /// The relay acknowledged up to `acked`, the oldest record of which was written at `oldest`.
    pub(super) fn relay_acked(&mut self, acked: LocalSeq, oldest: Instant) {
        if self.target.is_some() {
            self.waiting.push_back((acked, oldest));
        }
    }
}

impl Queue {
    /// A new session began: until its peer says what the target holds, the last word stands.
    pub fn session_began(&self) {
        self.lock().relayed.told_this_session = false;
    }

    /// The session's peer acknowledged records. If it has not said what the target holds, it
    /// is the target: its ACKs are target-durable, nothing waits for anything else.
    pub fn peer_acked(&self) {
        let mut st = self.lock();
        let r = &mut st.relayed;
        if !r.told_this_session && r.target.is_some() {
            tracing::info!("the session's peer is the master target: its ACKs are target-durable");
            *r = Relayed::default();
        }
    }

    /// A relay says the master target holds everything up to wire seq `durable`.
    pub fn target_durable(&self, durable: Seq) {
        let mut st = self.lock();
        let st: &mut Inner = &mut st;
        st.relayed.told_this_session = true;
        st.relayed.target = Some(st.relayed.target.map_or(durable, |t| t.max(durable)));
        let Some(base) = st.base else { return };
        // Below this run's first seq (the relay's cache began earlier): nothing of this run.
        let local = Some(base.local(durable))
            .filter(|l| *l <= st.last_seq)
            .unwrap_or_default();
        st.relayed.target_local = Some(st.relayed.target_local.map_or(local, |t| t.max(local)));
        while st.relayed.waiting.front().is_some_and(|(s, _)| *s <= local) {
            st.relayed.waiting.pop_front();
        }
    }
}
