//! Through a relay (`rewind-mtd relay`), an ACK says the relay's cache holds the records (they
//! have left this host); the master target's own durable seq comes in a CONTROL target-durable.
//! The queue frees records at the relay's ACK as before (the relay keeps them), and remembers
//! when the acknowledged records were written until the target holds them, so that the RPO is
//! measured to the master target, not to the relay.

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
    /// A relay says the master target holds everything up to wire seq `durable`.
    pub fn target_durable(&self, durable: Seq) {
        let mut st = self.lock();
        let st: &mut Inner = &mut st;
        st.relayed.target = Some(st.relayed.target.map_or(durable, |t| t.max(durable)));
        let Some(base) = st.base else { return };
        let local = base.local(durable);
        while st.relayed.waiting.front().is_some_and(|(s, _)| *s <= local) {
            st.relayed.waiting.pop_front();
        }
    }
}
