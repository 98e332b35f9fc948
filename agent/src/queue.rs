//! The group's ordered stream in memory: captured writes and sync copies get their seq here, wait
//! for the sender, and stay until the target acknowledges them.
//!
//! Seqs are assigned under one lock, so the order of seqs is the order in which writes were
//! recorded, across all disks of the group. The queue numbers records locally from 1; the sender
//! learns at its first WELCOME where the target stands (`base`, its durable seq) and the wire seq
//! of local seq `s` is `base + s`. That lets capture start before the target is reachable.
//!
//! The queue is bounded by the bytes of data it holds: a writer that would go over the limit
//! waits until acknowledgements free space (a disk spool that takes over instead is a later step,
//! so today a long outage stalls the workload once memory is full).
//!
//! Tags sit in the stream after the record whose seq they name (usually right after the last
//! record so far; [`Queue::push_tag_at`] can name an earlier one); they take no seq of their own.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rewind_formats::{RecordKind, TagKind};

use crate::aligned::AlignedBuf;
use crate::error::{Error, Result};

/// One captured write or sync copy (zero-range records carry no data).
pub struct Record {
    pub disk: u16,
    pub kind: RecordKind,
    pub offset: u64,
    pub len: u32,
    /// `len` bytes for [`RecordKind::Data`], `None` otherwise.
    pub data: Option<AlignedBuf>,
}

impl Record {
    /// Bytes this record holds in memory (its data; the header is noise).
    pub fn mem_bytes(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.len() as u64)
    }
}

/// A tag waiting in the stream.
#[derive(Clone, Debug)]
pub struct PendingTag {
    /// Unique per agent run, increasing; lets a caller wait for this tag.
    pub id: u64,
    pub name: String,
    pub kind: TagKind,
    pub timestamp_ms: u64,
}

/// One element of the stream.
#[derive(Clone)]
pub enum Entry {
    Record {
        seq: u64,
        record: Arc<Record>,
    },
    /// Labels the state after local seq `seq` (0: the state the target had at `base`).
    Tag {
        seq: u64,
        tag: PendingTag,
    },
}

impl Entry {
    /// The local seq: a record's own, or the one a tag labels.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Record { seq, .. } | Entry::Tag { seq, .. } => *seq,
        }
    }
}

struct Inner {
    entries: VecDeque<Entry>,
    /// Index in `entries` of the next entry to send.
    cursor: usize,
    /// Last local seq assigned (0: none).
    last_seq: u64,
    /// Last local seq the target acknowledged.
    acked: u64,
    /// Wire seq of local seq 0, once the first WELCOME told it.
    base: Option<u64>,
    queued_bytes: u64,
    next_tag_id: u64,
    /// Tags with an id below this have left the queue (sent and their seq acked).
    tags_done_below: u64,
    stopping: bool,
    /// Threads waiting on `changed`.
    waiting: usize,
}

/// Counters for the status file.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueStats {
    pub last_seq: u64,
    pub acked_seq: u64,
    pub base: Option<u64>,
    pub queued_bytes: u64,
    pub entries: usize,
}

/// The bounded, ordered stream shared by the capture threads, the sync and the sender.
pub struct Queue {
    inner: Mutex<Inner>,
    /// Signalled when space is freed or the queue stops (writers wait on it).
    space: Condvar,
    /// Signalled when entries are added, acks arrive, or the queue stops.
    changed: Condvar,
    max_bytes: u64,
}

impl Queue {
    pub fn new(max_bytes: u64) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                cursor: 0,
                last_seq: 0,
                acked: 0,
                base: None,
                queued_bytes: 0,
                next_tag_id: 1,
                tags_done_below: 1,
                stopping: false,
                waiting: 0,
            }),
            space: Condvar::new(),
            changed: Condvar::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on `changed` (up to `timeout`), counted so that a push wakes only when someone
    /// waits (a futex call saved per captured write).
    fn wait_changed<'a>(
        &self,
        mut st: MutexGuard<'a, Inner>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Inner> {
        st.waiting += 1;
        let mut st = match timeout {
            None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.changed
                    .wait_timeout(st, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        st.waiting -= 1;
        st
    }

    /// Appends a record and returns its local seq. Waits while the queue is full (a record
    /// larger than the whole limit still goes in once the queue is empty).
    pub fn push(&self, record: Record) -> Result<u64> {
        let (_st, seq) = self.push_locked(record)?;
        Ok(seq)
    }

    /// Like [`Queue::push`], and a tag naming the record's seq goes in right after it, with
    /// nothing in between (a sync's begin mark names its first record this way).
    pub fn push_tagged(
        &self,
        record: Record,
        name: &str,
        kind: TagKind,
        timestamp_ms: u64,
    ) -> Result<u64> {
        let (mut st, seq) = self.push_locked(record)?;
        Self::append_tag(&mut st, seq, name, kind, timestamp_ms);
        Ok(seq)
    }

    fn push_locked(&self, record: Record) -> Result<(MutexGuard<'_, Inner>, u64)> {
        let bytes = record.mem_bytes();
        let mut st = self.lock();
        while !st.stopping && st.queued_bytes > 0 && st.queued_bytes + bytes > self.max_bytes {
            st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stopping {
            return Err(Error::Stopping);
        }
        st.last_seq += 1;
        let seq = st.last_seq;
        st.queued_bytes += bytes;
        st.entries.push_back(Entry::Record {
            seq,
            record: Arc::new(record),
        });
        if st.waiting > 0 {
            self.changed.notify_all();
        }
        Ok((st, seq))
    }

    fn append_tag(st: &mut Inner, seq: u64, name: &str, kind: TagKind, timestamp_ms: u64) -> u64 {
        let id = st.next_tag_id;
        st.next_tag_id += 1;
        st.entries.push_back(Entry::Tag {
            seq,
            tag: PendingTag {
                id,
                name: name.to_string(),
                kind,
                timestamp_ms,
            },
        });
        id
    }

    /// Appends a tag naming local seq `seq`, a record already in the stream (or sent and
    /// acknowledged: the target takes tags for any seq it has). Records after `seq` may precede
    /// it in the stream. Returns the tag's id.
    pub fn push_tag_at(
        &self,
        seq: u64,
        name: &str,
        kind: TagKind,
        timestamp_ms: u64,
    ) -> Result<u64> {
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping);
        }
        if seq == 0 || seq > st.last_seq {
            return Err(Error::Config {
                what: "tag",
                why: format!("seq {seq} has not been recorded (last is {})", st.last_seq),
            });
        }
        let id = Self::append_tag(&mut st, seq, name, kind, timestamp_ms);
        self.changed.notify_all();
        Ok(id)
    }

    /// Appends a tag naming the state after everything recorded so far. Returns its id and
    /// its wire seq, if known yet (not before the first WELCOME, see the module docs).
    pub fn push_tag(
        &self,
        name: &str,
        kind: TagKind,
        timestamp_ms: u64,
    ) -> Result<(u64, Option<u64>)> {
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping);
        }
        if st.last_seq == 0 && st.base.unwrap_or(0) == 0 {
            return Err(Error::Config {
                what: "tag",
                why: "nothing has been written to the group yet: there is no point to tag".into(),
            });
        }
        let seq = st.last_seq;
        let id = Self::append_tag(&mut st, seq, name, kind, timestamp_ms);
        self.changed.notify_all();
        Ok((id, st.base.map(|b| b + seq)))
    }

    /// Sets the wire seq of local seq 0; only the first call counts. Returns the base in force.
    pub fn set_base(&self, base: u64) -> u64 {
        let mut st = self.lock();
        let b = *st.base.get_or_insert(base);
        self.changed.notify_all();
        b
    }

    pub fn base(&self) -> Option<u64> {
        self.lock().base
    }

    /// Waits until the base is known (or the queue stops).
    pub fn wait_base(&self) -> Result<u64> {
        let mut st = self.lock();
        loop {
            if st.stopping {
                return Err(Error::Stopping);
            }
            if let Some(b) = st.base {
                return Ok(b);
            }
            st = self.wait_changed(st, None);
        }
    }

    /// Waits up to `wait` for entries to send; returns how many there are (0: none, or the
    /// queue stopped).
    pub fn wait_unsent(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        while st.cursor >= st.entries.len() && !st.stopping {
            let now = Instant::now();
            if now >= deadline {
                return 0;
            }
            st = self.wait_changed(st, Some(deadline - now));
        }
        st.entries.len().saturating_sub(st.cursor)
    }

    /// The next entries to send: consecutive records (at most `max_records`, about `max_bytes`
    /// of data) or a single tag. Waits up to `wait` for something to send.
    pub fn next_batch(&self, max_records: usize, max_bytes: u64, wait: Duration) -> Vec<Entry> {
        let deadline = Instant::now() + wait;
        let mut st = self.lock();
        while st.cursor >= st.entries.len() && !st.stopping {
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            st = self.wait_changed(st, Some(deadline - now));
        }
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
                    let b = record.mem_bytes();
                    if !out.is_empty() && (out.len() >= max_records || bytes + b > max_bytes) {
                        break;
                    }
                    bytes += b;
                    out.push(e.clone());
                    st.cursor += 1;
                }
            }
        }
        out
    }

    /// The target has everything up to local seq `acked`: free it. Tags leave once sent and
    /// covered. Returns false if `acked` is beyond what was assigned (a confused target).
    pub fn ack(&self, acked: u64) -> bool {
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

    fn free_acked(st: &mut Inner) {
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
                Entry::Record { record, .. } => st.queued_bytes -= record.mem_bytes(),
                Entry::Tag { tag, .. } => st.tags_done_below = tag.id + 1,
            }
        }
    }

    /// A new connection: send everything not yet acknowledged again, from the start.
    pub fn rewind_cursor(&self) {
        let mut st = self.lock();
        st.cursor = 0;
    }

    /// After a send: tags that were just sent and whose seq is already acknowledged can go.
    pub fn collect_sent_tags(&self) {
        let mut st = self.lock();
        let before = st.tags_done_below;
        Self::free_acked(&mut st);
        if st.tags_done_below != before {
            self.changed.notify_all();
        }
    }

    /// Waits until tag `id` has been sent and its seq acknowledged. False on timeout or stop.
    pub fn wait_tag(&self, id: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.tags_done_below > id {
                return true;
            }
            let now = Instant::now();
            if st.stopping || now >= deadline {
                return false;
            }
            st = self.wait_changed(st, Some(deadline - now));
        }
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

    /// Wakes every waiter; pushes fail from now on.
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stopping = true;
        self.space.notify_all();
        self.changed.notify_all();
    }

    /// Wakes the sender (its session ended) without changing anything.
    pub fn poke(&self) {
        let _st = self.lock();
        self.changed.notify_all();
    }

    pub fn stats(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            last_seq: st.last_seq,
            acked_seq: st.acked,
            base: st.base,
            queued_bytes: st.queued_bytes,
            entries: st.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(len: usize) -> Record {
        Record {
            disk: 0,
            kind: RecordKind::Data,
            offset: 0,
            len: len as u32,
            data: Some(AlignedBuf::new(len)),
        }
    }

    #[test]
    fn seqs_batches_tags_and_acks() {
        let q = Queue::new(1 << 20);
        assert!(q.push_tag("early", TagKind::User, 0).is_err());
        assert_eq!(q.push(rec(4096)).unwrap(), 1);
        assert_eq!(q.push(rec(4096)).unwrap(), 2);
        let (id, seq) = q.push_tag("t", TagKind::User, 0).unwrap();
        assert_eq!(seq, None, "no base yet");
        assert_eq!(q.set_base(10), 10);
        assert_eq!(q.set_base(20), 10, "only the first base counts");
        assert_eq!(q.push(rec(4096)).unwrap(), 3);
        let b = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert_eq!(b.len(), 2, "records up to the tag");
        let t = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert!(matches!(t.as_slice(), [Entry::Tag { seq: 2, .. }]));
        assert!(q.ack(2));
        assert!(!q.wait_tag(id, Duration::ZERO) || q.stats().entries == 1);
        q.collect_sent_tags();
        assert!(q.wait_tag(id, Duration::ZERO));
        // A reconnect resends what is not acked.
        let b = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert_eq!(b.len(), 1);
        q.rewind_cursor();
        let b = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert!(matches!(b.as_slice(), [Entry::Record { seq: 3, .. }]));
        assert!(!q.ack(4), "ack beyond the last seq");
        assert!(q.ack(3));
        assert_eq!(q.stats().queued_bytes, 0);
        assert!(q.wait_drained(Duration::ZERO));
    }

    #[test]
    fn tags_at_a_given_seq() {
        let q = Queue::new(1 << 20);
        q.set_base(0);
        assert_eq!(q.push(rec(4096)).unwrap(), 1);
        assert_eq!(
            q.push_tagged(rec(4096), "s", TagKind::SyncBegin, 0)
                .unwrap(),
            2
        );
        assert_eq!(q.push(rec(4096)).unwrap(), 3);
        q.push_tag_at(2, "s", TagKind::SyncEnd, 0).unwrap();
        assert!(q.push_tag_at(4, "s", TagKind::SyncEnd, 0).is_err());
        assert!(q.push_tag_at(0, "s", TagKind::SyncEnd, 0).is_err());
        let b = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert_eq!(b.len(), 2, "records up to the begin tag");
        let t = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert!(
            matches!(t.as_slice(), [Entry::Tag { seq: 2, tag }] if tag.kind == TagKind::SyncBegin)
        );
        let b = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert!(matches!(b.as_slice(), [Entry::Record { seq: 3, .. }]));
        let t = q.next_batch(100, 1 << 20, Duration::ZERO);
        assert!(
            matches!(t.as_slice(), [Entry::Tag { seq: 2, tag }] if tag.kind == TagKind::SyncEnd)
        );
        assert!(q.ack(3));
        q.collect_sent_tags();
        assert!(q.wait_drained(Duration::ZERO));
    }

    #[test]
    fn a_full_queue_blocks_writers_until_acked() {
        let q = Arc::new(Queue::new(8192));
        q.push(rec(4096)).unwrap();
        q.push(rec(4096)).unwrap();
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.push(rec(4096)).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "the third write waits for space");
        q.next_batch(10, 1 << 20, Duration::ZERO);
        q.ack(1);
        assert_eq!(t.join().unwrap(), 3);
    }
}
