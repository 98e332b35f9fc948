//! Tags and sync windows in the stream: a tag names the state after the last record recorded
//! before it; a window's SyncBegin and SyncEnd bracket a sync's records.

use std::time::{Duration, Instant};

use rewind_formats::{Seq, TagKind};

use super::{Entry, Inner, PendingTag, Queue};
use crate::error::{Error, Result};
use crate::stream::seq::{LocalSeq, SeqBase};

impl Queue {
    /// A resync starts: the next record opens its window (SyncBegin `name`), unless one is
    /// open already.
    pub fn open_window(&self, name: &str) {
        let mut st = self.lock();
        if !st.window_open && st.pending_begin.is_none() {
            st.pending_begin = Some(name.to_string());
        }
    }

    /// Opens a window that starts at the first record not yet acknowledged: after a target
    /// lost data, or at the first contact with an empty target, everything queued goes out
    /// again (or for the first time) and belongs inside the window. The SyncBegin goes right
    /// after that record, or on the next record when none is queued. Call before the session
    /// rewinds its cursor (the tag may land among entries sent before).
    pub fn open_window_at_unacked(&self, name: &str) {
        let mut st = self.lock();
        st.pending_begin = None;
        let first = st.acked.next();
        let begun = st.entries.iter().any(
            |e| matches!(e, Entry::Tag { seq, tag } if *seq == first && tag.kind == TagKind::SyncBegin),
        );
        if begun {
            // The window already starts there (the first record carried it).
            st.window_open = true;
            return;
        }
        let at = st
            .entries
            .iter()
            .position(|e| matches!(e, Entry::Record { seq, .. } if *seq == first));
        match at {
            Some(i) => {
                let tag = Self::new_tag(&mut st, first, name, TagKind::SyncBegin, crate::now_ms());
                st.entries.insert(i + 1, tag);
                if st.cursor > i {
                    st.cursor += 1;
                }
                st.window_open = true;
            }
            None => {
                st.window_open = false;
                st.pending_begin = Some(name.to_string());
            }
        }
        self.changed.notify_all();
    }

    /// The resync is complete: a SyncEnd after the last record closes the window. Returns
    /// the tag's id, if one was needed (no record since [`Queue::open_window`]: none).
    pub fn close_window(&self, name: &str) -> Option<u64> {
        let mut st = self.lock();
        st.pending_begin = None;
        if !st.window_open {
            return None;
        }
        st.window_open = false;
        let seq = st.last_seq;
        let id = Self::append_tag(&mut st, seq, name, TagKind::SyncEnd, crate::now_ms());
        self.changed.notify_all();
        Some(id)
    }

    pub(super) fn new_tag(
        st: &mut Inner,
        seq: LocalSeq,
        name: &str,
        kind: TagKind,
        timestamp_ms: u64,
    ) -> Entry {
        let id = st.next_tag_id;
        st.next_tag_id += 1;
        st.tags_queued.insert(id);
        Entry::Tag {
            seq,
            tag: PendingTag {
                id,
                name: name.to_string(),
                kind,
                timestamp_ms,
            },
        }
    }

    pub(super) fn append_tag(
        st: &mut Inner,
        seq: LocalSeq,
        name: &str,
        kind: TagKind,
        timestamp_ms: u64,
    ) -> u64 {
        let e = Self::new_tag(st, seq, name, kind, timestamp_ms);
        let id = match &e {
            Entry::Tag { tag, .. } => tag.id,
            Entry::Record { .. } => unreachable!("new_tag makes tags"),
        };
        st.entries.push_back(e);
        id
    }

    /// Appends a tag naming the state after everything recorded so far. Returns its id and
    /// its wire seq, if known yet (not before the first WELCOME, see the module docs).
    pub fn push_tag(
        &self,
        name: &str,
        kind: TagKind,
        timestamp_ms: u64,
    ) -> Result<(u64, Option<Seq>)> {
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping);
        }
        let marks_a_sync = matches!(kind, TagKind::SyncBegin | TagKind::SyncEnd);
        if !marks_a_sync && st.overflow {
            // The tag would label the last recorded seq, but writes since were dropped: the
            // target's state there is not what the tag stands for.
            return Err(Error::Config {
                what: "tag",
                why: "the agent is in bitmap mode (memory and spool full; writes are not being \
                      streamed): no point can be tagged until the target has caught up and the \
                      resync is done (see `rewind-agent status`)"
                    .into(),
            });
        }
        if !marks_a_sync && (st.window_open || st.pending_begin.is_some()) {
            return Err(Error::Config {
                what: "tag",
                why: "a sync is running: the target's copy is not consistent until it completes, \
                      so a tag now would not be recoverable (see `rewind-agent status`)"
                    .into(),
            });
        }
        if st.last_seq == LocalSeq(0) && st.base.is_none_or(|b| b == SeqBase(0)) {
            return Err(Error::Config {
                what: "tag",
                why: "nothing has been written to the group yet: there is no point to tag".into(),
            });
        }
        let seq = st.last_seq;
        let id = Self::append_tag(&mut st, seq, name, kind, timestamp_ms);
        self.changed.notify_all();
        Ok((id, st.base.map(|b| b.wire(seq))))
    }

    /// After a send: tags that were just sent and whose seq is already acknowledged can go.
    pub fn collect_sent_tags(&self) {
        let mut st = self.lock();
        let before = st.tags_queued.len();
        Self::free_acked(&mut st);
        if st.tags_queued.len() != before {
            self.changed.notify_all();
        }
    }

    /// Waits until tag `id` has been sent and its seq acknowledged. False on timeout, stop, or
    /// if the tag was dropped (the target lost the state it named).
    pub fn wait_tag(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.tags_dropped.contains(&id) {
                return false;
            }
            if id < st.next_tag_id && !st.tags_queued.contains(&id) {
                return true;
            }
            let now = Instant::now();
            if st.stopping || now >= deadline {
                return false;
            }
            st = self.wait_changed(st, Some(deadline - now));
        }
    }
}
