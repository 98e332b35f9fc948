//! The sender's side of the queue: what to send next, and what the target's ACKs free.

use std::time::{Duration, Instant};

use rewind_formats::RecordKind;

use super::{Entry, Inner, Queue, LAG_WINDOW};
use crate::stream::seq::LocalSeq;

impl Queue {
    /// Waits up to `wait` for entries to send; returns how many there are (0: none, or the
    /// queue stopped).
    pub fn wait_unsent(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        while st.cursor >= st.entries.len() && !st.stopping && !st.kicked {
            let now = Instant::now();
            if now >= deadline {
                return 0;
            }
            st = self.wait_changed(st, Some(deadline - now));
        }
        st.kicked = false;
        st.entries.len().saturating_sub(st.cursor)
    }

    /// The next entries to send: consecutive records (at most `max_records`, about `max_bytes`
    /// of data) or a single tag; empty when nothing waits (the sender waits with
    /// `wait_unsent`).
    pub fn next_batch(&self, max_records: usize, max_bytes: u64) -> Vec<Entry> {
        let mut st = self.lock();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(e) = st.entries.get(st.cursor) {
            match e {
                Entry::Tag { .. } if out.is_empty() => {
                    out.push(e.clone());
                    st.cursor += 1;
                    break;
                }
                Entry::Tag { .. } => break,
                Entry::Record { record, .. } => {
                    let b = u64::from(record.len) * u64::from(record.kind == RecordKind::Data);
                    if !out.is_empty() && (out.len() >= max_records || bytes + b > max_bytes) {
                        break;
                    }
                    bytes += b;
                    let (disk, len) = (record.disk, u64::from(record.len));
                    out.push(e.clone());
                    st.cursor += 1;
                    st.tally(disk).sent += len;
                }
            }
        }
        out
    }

    /// The target has everything up to local seq `acked`: free it. Tags leave once sent and
    /// covered. Returns false if `acked` is beyond what was assigned (a confused target).
    pub fn ack(&self, acked: LocalSeq) -> bool {
        let mut st = self.lock();
        if acked > st.last_seq {
            return false;
        }
        if acked <= st.acked {
            return true;
        }
        st.acked = acked;
        Self::free_acked(&mut st);
        self.space.notify_all();
        self.changed.notify_all();
        true
    }

    pub(super) fn free_acked(st: &mut Inner) {
        let mut oldest: Option<Instant> = None;
        while let Some(e) = st.entries.front() {
            let done = match e {
                Entry::Record { seq, .. } => *seq <= st.acked,
                Entry::Tag { seq, .. } => *seq <= st.acked && st.cursor > 0,
            };
            if !done {
                break;
            }
            let e = st.entries.pop_front().expect("front exists");
            st.cursor = st.cursor.saturating_sub(1);
            match e {
                Entry::Record { record, .. } => {
                    oldest.get_or_insert(record.recorded_at);
                    st.tally(record.disk).acked += u64::from(record.len);
                    st.queued_bytes -= record.mem_bytes();
                    if let (Some(pos), Some(spool)) = (record.spooled, st.spool.as_mut()) {
                        spool.free(pos, u64::from(record.len));
                    }
                }
                Entry::Tag { tag, .. } => {
                    st.tags_queued.remove(&tag.id);
                }
            }
        }
        // One sample per acknowledgement: its oldest record's wait (the worst in it).
        if let Some(t) = oldest {
            let acked = st.acked;
            st.relayed.relay_acked(acked, t);
            let now = Instant::now();
            let ms = now.duration_since(t).as_millis().min(u128::from(u32::MAX)) as u32;
            st.lag.push_back((now, ms));
            while st
                .lag
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > LAG_WINDOW)
            {
                st.lag.pop_front();
            }
        }
    }

    /// A new connection: send everything not yet acknowledged again, from the start.
    pub fn rewind_cursor(&self) {
        let mut st = self.lock();
        st.cursor = 0;
    }

    /// Waits until everything is acknowledged (and every tag sent). False on timeout.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.entries.is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.wait_changed(st, Some(deadline - now));
        }
    }
}
