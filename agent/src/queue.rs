//! The group's ordered stream in memory: captured writes and sync copies get their seq here, wait
//! for the sender, and stay until the target acknowledges them.
//!
//! Seqs are assigned under one lock, so the order of seqs is the order in which writes were
//! recorded, across all disks of the group. The queue numbers records locally from 1; the sender
//! learns at its first WELCOME where the target stands (`base`, its durable seq) and the wire seq
//! of local seq `s` is `base + s`. That lets capture start before the target is reachable.
//!
//! Memory is bounded by the bytes of data the queue holds. A captured write that does not fit
//! goes to the disk spool ([`crate::spool`]); one that fits in neither is dropped from the
//! stream and the queue enters *bitmap mode*: every later write is dropped too (their regions
//! are pinned in the dirty-region map) until the stream has drained and the resync has taken
//! over ([`Queue::end_overflow`]). The workload never waits for the link. The sync and resync
//! wait for memory instead ([`Queue::wait_for_space`], before taking a region's lock, then
//! [`Queue::push_copy`]): they pace themselves to the link.
//!
//! A resync's window (the points where the target mixes old and new blocks) is opened with
//! [`Queue::open_window`]: the next record recorded, whoever records it, carries a SyncBegin
//! tag; [`Queue::close_window`] puts the SyncEnd after the last record.
//!
//! Tags sit in the stream after the record whose seq they name (the last record so far); they
//! take no seq of their own. A user's tag is refused in bitmap mode and while a sync window is
//! open: the point it would name is not the state it stands for, or not recoverable.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rewind_formats::{RecordKind, TagKind};

use crate::error::{Error, Result};
use crate::spool::Spool;
use rewind_linux::aligned::AlignedBuf;

/// What an entry costs in memory besides its data (the record, its Arc, the deque slot).
pub const ENTRY_OVERHEAD: u64 = 128;

/// How far back the replication lag figures look.
pub const LAG_WINDOW: Duration = Duration::from_secs(10);

/// One captured write or sync copy (zero-range records carry no data).
pub struct Record {
    pub disk: u16,
    pub kind: RecordKind,
    pub offset: u64,
    pub len: u32,
    /// `len` bytes for [`RecordKind::Data`] in memory, `None` otherwise.
    pub data: Option<AlignedBuf>,
    /// Where a [`RecordKind::Data`] record's bytes are in the spool, when not in memory.
    pub spooled: Option<u64>,
    /// When it was recorded (its write complete on the backing disk): the lag is measured
    /// from here to the target's acknowledgement.
    pub recorded_at: Instant,
}

impl Record {
    /// A record whose data is in memory (or that has none).
    pub fn new(
        disk: u16,
        kind: RecordKind,
        offset: u64,
        len: u32,
        data: Option<AlignedBuf>,
    ) -> Record {
        Record {
            disk,
            kind,
            offset,
            len,
            data,
            spooled: None,
            recorded_at: Instant::now(),
        }
    }

    /// Bytes this record holds in memory: its data, and [`ENTRY_OVERHEAD`] for the entry
    /// itself (so records without data in memory, zero ranges and spooled ones, are bounded
    /// too).
    pub fn mem_bytes(&self) -> u64 {
        ENTRY_OVERHEAD + self.data.as_ref().map_or(0, |d| d.len() as u64)
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
    /// Ids of the tags in the queue (a tag leaves once sent and its seq acknowledged).
    tags_queued: std::collections::BTreeSet<u64>,
    /// Ids of tags dropped by [`Queue::rebase`] (they never reach the target).
    tags_dropped: std::collections::BTreeSet<u64>,
    spool: Option<Spool>,
    /// Bitmap mode: records are dropped until [`Queue::end_overflow`].
    overflow: bool,
    /// Records dropped in this run (bitmap mode).
    dropped: u64,
    /// The next record recorded opens a resync window with a SyncBegin tag of this name.
    pending_begin: Option<String>,
    /// A SyncBegin went into the stream and its SyncEnd not yet.
    window_open: bool,
    /// [`Queue::poke`] was called: the sender's next wait returns at once.
    kicked: bool,
    /// Replication lag samples of the last [`LAG_WINDOW`]: (when acknowledged, ms).
    lag: VecDeque<(Instant, u32)>,
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
    pub spooled_bytes: u64,
    pub spool_capacity: u64,
    pub overflow: bool,
    pub dropped: u64,
    pub window_open: bool,
    /// Replication lag over the last [`LAG_WINDOW`] (ms from a write's completion on the
    /// source to the target's acknowledgement): p50, p99, max; `None` without acks.
    pub lag_ms: Option<(u32, u32, u32)>,
}

/// What became of a captured write offered to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Recorded with this local seq.
    Seq(u64),
    /// Dropped (bitmap mode): its regions must be resynced.
    Dropped,
}

impl Pushed {
    pub fn seq(self) -> Option<u64> {
        match self {
            Pushed::Seq(s) => Some(s),
            Pushed::Dropped => None,
        }
    }
}

/// The bounded, ordered stream shared by the capture threads, the sync and the sender.
pub struct Queue {
    inner: Mutex<Inner>,
    /// Signalled when space is freed or the queue stops (writers wait on it).
    space: Condvar,
    /// Signalled when entries are added, acks arrive, or the queue stops.
    changed: Condvar,
    max_bytes: u64,
    /// The spool file, for reading spooled records without the lock.
    spool_file: Option<Arc<std::fs::File>>,
}

impl Queue {
    pub fn new(max_bytes: u64, spool: Option<Spool>) -> Queue {
        Queue {
            spool_file: spool.as_ref().map(Spool::reader),
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                cursor: 0,
                last_seq: 0,
                acked: 0,
                base: None,
                queued_bytes: 0,
                next_tag_id: 1,
                tags_queued: Default::default(),
                tags_dropped: Default::default(),
                spool,
                overflow: false,
                dropped: 0,
                pending_begin: None,
                window_open: false,
                kicked: false,
                lag: VecDeque::new(),
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

    /// Offers a captured write: recorded in memory, or in the spool when memory is full, or
    /// dropped (bitmap mode) when both are. Never waits.
    pub fn push(&self, mut record: Record) -> Result<Pushed> {
        let bytes = record.mem_bytes();
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping);
        }
        if !st.overflow && st.queued_bytes > 0 && st.queued_bytes + bytes > self.max_bytes {
            let pos = match (&mut st.spool, &record.data) {
                (Some(spool), Some(data)) => spool.put(data),
                _ => None,
            };
            match pos {
                Some(pos) => {
                    record.spooled = Some(pos);
                    record.data = None;
                }
                None => {
                    tracing::warn!(
                        queued_bytes = st.queued_bytes,
                        spooled_bytes = st.spool.as_ref().map_or(0, Spool::used),
                        "memory queue and spool are full: bitmap mode (writes are tracked as \
                         dirty regions and resynced once the target has caught up)"
                    );
                    st.overflow = true;
                    // A sync waiting for memory gives up now (its copies would be dropped).
                    self.space.notify_all();
                }
            }
        }
        if st.overflow {
            st.dropped += 1;
            return Ok(Pushed::Dropped);
        }
        Ok(Pushed::Seq(self.append(&mut st, record)))
    }

    /// Waits until `bytes` more fit in memory (the sync goes at the link's pace and never
    /// spools). False in bitmap mode: the copy would be turned away. Called before taking a
    /// region's lock, so captured writes never wait for the link behind a sync.
    pub fn wait_for_space(&self, bytes: u64) -> Result<bool> {
        let mut st = self.lock();
        loop {
            if st.stopping {
                return Err(Error::Stopping);
            }
            if st.overflow {
                return Ok(false);
            }
            if st.queued_bytes == 0 || st.queued_bytes + bytes <= self.max_bytes {
                return Ok(true);
            }
            st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records a sync or resync copy without waiting (after [`Queue::wait_for_space`]: memory
    /// may go over its bound by one region). `None`: bitmap mode; the region stays pinned.
    pub fn push_copy(&self, record: Record) -> Result<Option<u64>> {
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping);
        }
        if st.overflow {
            return Ok(None);
        }
        Ok(Some(self.append(&mut st, record)))
    }

    fn append(&self, st: &mut Inner, record: Record) -> u64 {
        st.last_seq += 1;
        let seq = st.last_seq;
        st.queued_bytes += record.mem_bytes();
        st.entries.push_back(Entry::Record {
            seq,
            record: Arc::new(record),
        });
        if let Some(name) = st.pending_begin.take() {
            Self::append_tag(
                st,
                seq,
                &name,
                TagKind::SyncBegin,
                rewind_linux::clock::now_ms(),
            );
            st.window_open = true;
        }
        if st.waiting > 0 {
            self.changed.notify_all();
        }
        seq
    }

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
        let first = st.acked + 1;
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
                let tag = Self::new_tag(
                    &mut st,
                    first,
                    name,
                    TagKind::SyncBegin,
                    rewind_linux::clock::now_ms(),
                );
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
        let id = Self::append_tag(
            &mut st,
            seq,
            name,
            TagKind::SyncEnd,
            rewind_linux::clock::now_ms(),
        );
        self.changed.notify_all();
        Some(id)
    }

    /// Whether the queue is in bitmap mode.
    pub fn overflowing(&self) -> bool {
        self.lock().overflow
    }

    /// Leaves bitmap mode once everything recorded is acknowledged (the resync takes over from
    /// here; the caller opens its window first). False if not drained yet.
    pub fn end_overflow(&self) -> bool {
        let mut st = self.lock();
        if !st.entries.is_empty() {
            return false;
        }
        st.overflow = false;
        true
    }

    /// The last local seq assigned.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// The bytes of a spooled record.
    pub fn read_spooled(&self, record: &Record) -> std::io::Result<Vec<u8>> {
        let (Some(file), Some(pos)) = (&self.spool_file, record.spooled) else {
            return Err(std::io::Error::other("the record is not spooled"));
        };
        crate::spool::read(file, pos, record.len as usize)
    }

    fn new_tag(st: &mut Inner, seq: u64, name: &str, kind: TagKind, timestamp_ms: u64) -> Entry {
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

    fn append_tag(st: &mut Inner, seq: u64, name: &str, kind: TagKind, timestamp_ms: u64) -> u64 {
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
    ) -> Result<(u64, Option<u64>)> {
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
        if st.last_seq == 0 && st.base.unwrap_or(0) == 0 {
            return Err(Error::Config {
                what: "tag",
                why: "nothing has been written to the group yet: there is no point to tag".into(),
            });
        }
        let seq = st.last_seq;
        let id = Self::append_tag(&mut st, seq, name, kind, timestamp_ms);
        self.changed.notify_all();
        Ok((id, st.base.map(|b| b.wrapping_add(seq))))
    }

    /// Sets the wire seq of local seq 0; only the first call counts. Returns the base in force.
    pub fn set_base(&self, base: u64) -> u64 {
        let mut st = self.lock();
        let b = *st.base.get_or_insert(base);
        self.changed.notify_all();
        b
    }

    /// The target lost acknowledged records: from now on local seq `acked + 1` (the first one
    /// not acknowledged) goes out as `durable + 1`. Tags naming acknowledged seqs leave (the
    /// states they name are gone at the target). Returns the new base (wire = base + local,
    /// modulo 2^64: the base may have to be "negative").
    pub fn rebase(&self, durable: u64) -> u64 {
        let mut st = self.lock();
        let base = durable.wrapping_sub(st.acked);
        st.base = Some(base);
        let acked = st.acked;
        let before = st.entries.len();
        let cursor = st.cursor;
        let mut kept = VecDeque::with_capacity(before);
        for (i, e) in std::mem::take(&mut st.entries).into_iter().enumerate() {
            if let Entry::Tag { seq, tag } = &e {
                if *seq > acked {
                    kept.push_back(e);
                    continue;
                }
                st.tags_queued.remove(&tag.id);
                st.tags_dropped.insert(tag.id);
                if i < cursor {
                    st.cursor -= 1;
                }
                tracing::warn!(
                    seq = e.seq(),
                    "a tag for a state the target lost is dropped"
                );
                continue;
            }
            kept.push_back(e);
        }
        st.entries = kept;
        self.changed.notify_all();
        base
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

    /// Wakes the sender (its session ended, or HASHES requests wait) without changing
    /// anything.
    pub fn poke(&self) {
        let mut st = self.lock();
        st.kicked = true;
        self.changed.notify_all();
    }

    pub fn stats(&self) -> QueueStats {
        let st = self.lock();
        // The samples are copied under the lock (every write takes it) and sorted after.
        let lag: Vec<u32> = st.lag.iter().map(|(_, ms)| *ms).collect();
        let mut stats = QueueStats {
            last_seq: st.last_seq,
            acked_seq: st.acked,
            base: st.base,
            queued_bytes: st.queued_bytes,
            entries: st.entries.len(),
            spooled_bytes: st.spool.as_ref().map_or(0, Spool::used),
            spool_capacity: st.spool.as_ref().map_or(0, Spool::capacity),
            overflow: st.overflow,
            dropped: st.dropped,
            window_open: st.window_open || st.pending_begin.is_some(),
            lag_ms: None,
        };
        drop(st);
        stats.lag_ms = lag_percentiles(lag);
        stats
    }
}

fn lag_percentiles(mut v: Vec<u32>) -> Option<(u32, u32, u32)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Some((at(0.5), at(0.99), v[v.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(len: usize) -> Record {
        Record::new(
            0,
            RecordKind::Data,
            0,
            len as u32,
            Some(AlignedBuf::new(len)),
        )
    }

    fn seq(p: Result<Pushed>) -> u64 {
        p.unwrap().seq().expect("recorded")
    }

    #[test]
    fn seqs_batches_tags_and_acks() {
        let q = Queue::new(1 << 20, None);
        assert!(q.push_tag("early", TagKind::User, 0).is_err());
        assert_eq!(seq(q.push(rec(4096))), 1);
        assert_eq!(seq(q.push(rec(4096))), 2);
        let (id, s) = q.push_tag("t", TagKind::User, 0).unwrap();
        assert_eq!(s, None, "no base yet");
        assert_eq!(q.set_base(10), 10);
        assert_eq!(q.set_base(20), 10, "only the first base counts");
        assert_eq!(seq(q.push(rec(4096))), 3);
        let b = q.next_batch(100, 1 << 20);
        assert_eq!(b.len(), 2, "records up to the tag");
        let t = q.next_batch(100, 1 << 20);
        assert!(matches!(t.as_slice(), [Entry::Tag { seq: 2, .. }]));
        assert!(q.ack(2));
        assert!(!q.wait_tag(id, Duration::ZERO) || q.stats().entries == 1);
        q.collect_sent_tags();
        assert!(q.wait_tag(id, Duration::ZERO));
        // A reconnect resends what is not acked.
        let b = q.next_batch(100, 1 << 20);
        assert_eq!(b.len(), 1);
        q.rewind_cursor();
        let b = q.next_batch(100, 1 << 20);
        assert!(matches!(b.as_slice(), [Entry::Record { seq: 3, .. }]));
        assert!(!q.ack(4), "ack beyond the last seq");
        assert!(q.ack(3));
        assert_eq!(q.stats().queued_bytes, 0);
        assert!(q.wait_drained(Duration::ZERO));
    }

    #[test]
    fn a_window_opens_at_the_next_record_and_closes_after_the_last() {
        let q = Queue::new(1 << 20, None);
        q.set_base(0);
        assert_eq!(seq(q.push(rec(4096))), 1);
        q.open_window("resync");
        q.open_window("resync"); // once
        assert_eq!(q.push_copy(rec(4096)).unwrap(), Some(2));
        assert_eq!(seq(q.push(rec(4096))), 3);
        let e = q.push_tag("u", TagKind::User, 0).unwrap_err().to_string();
        assert!(e.contains("sync is running"), "{e}");
        assert!(q.close_window("resync").is_some());
        assert!(q.close_window("resync").is_none(), "closed already");
        let b = q.next_batch(100, 1 << 20);
        assert_eq!(b.len(), 2, "records up to the begin tag");
        let t = q.next_batch(100, 1 << 20);
        assert!(
            matches!(t.as_slice(), [Entry::Tag { seq: 2, tag }] if tag.kind == TagKind::SyncBegin)
        );
        let b = q.next_batch(100, 1 << 20);
        assert!(matches!(b.as_slice(), [Entry::Record { seq: 3, .. }]));
        let t = q.next_batch(100, 1 << 20);
        assert!(
            matches!(t.as_slice(), [Entry::Tag { seq: 3, tag }] if tag.kind == TagKind::SyncEnd)
        );
        assert!(q.ack(3));
        q.collect_sent_tags();
        assert!(q.wait_drained(Duration::ZERO));
        // A window with no record in it leaves no tags.
        q.open_window("resync");
        assert!(q.close_window("resync").is_none());
    }

    #[test]
    fn full_memory_spills_to_the_spool_then_bitmap_mode() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(&dir.path().join("g.spool"), 8192).unwrap();
        let q = Arc::new(Queue::new(2 * (4096 + ENTRY_OVERHEAD), Some(spool)));
        q.set_base(0);
        let mut r = rec(4096);
        r.data.as_mut().unwrap()[0] = 7;
        assert_eq!(seq(q.push(rec(4096))), 1);
        assert_eq!(seq(q.push(rec(4096))), 2);
        assert_eq!(seq(q.push(r)), 3, "spooled");
        assert_eq!(seq(q.push(rec(4096))), 4, "spooled");
        let st = q.stats();
        assert_eq!(
            (st.queued_bytes, st.spooled_bytes),
            (2 * (4096 + ENTRY_OVERHEAD) + 2 * ENTRY_OVERHEAD, 8192)
        );
        assert_eq!(q.push(rec(4096)).unwrap(), Pushed::Dropped, "both full");
        assert!(q.overflowing());
        let e = q.push_tag("t", TagKind::User, 0).unwrap_err().to_string();
        assert!(e.contains("bitmap mode"), "{e}");
        // The sync waits for memory; in bitmap mode it is turned away at once.
        assert!(!q.wait_for_space(4096).unwrap());
        assert_eq!(q.push_copy(rec(4096)).unwrap(), None);
        let b = q.next_batch(100, 1 << 20);
        assert_eq!(b.len(), 4);
        let Entry::Record { record, .. } = &b[2] else {
            panic!("a record")
        };
        assert!(record.data.is_none());
        assert_eq!(q.read_spooled(record).unwrap()[0], 7);
        assert!(!q.end_overflow(), "not drained yet");
        assert!(q.ack(4));
        assert_eq!(q.stats().spooled_bytes, 0);
        assert_eq!(
            q.push(rec(4096)).unwrap(),
            Pushed::Dropped,
            "bitmap mode lasts until the resync takes over"
        );
        assert!(q.end_overflow());
        assert_eq!(seq(q.push(rec(4096))), 5);
        assert_eq!(q.stats().dropped, 2);
    }

    #[test]
    fn the_sync_waits_for_memory_and_gives_up_in_bitmap_mode() {
        let one = 4096 + ENTRY_OVERHEAD;
        let q = Arc::new(Queue::new(2 * one, None));
        q.push_copy(rec(4096)).unwrap();
        q.push_copy(rec(4096)).unwrap();
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.wait_for_space(one).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "the third copy waits for space");
        q.next_batch(10, 1 << 20);
        q.ack(1);
        assert!(t.join().unwrap());
        assert_eq!(q.push_copy(rec(4096)).unwrap(), Some(3));
        // A wait for space ends when bitmap mode begins (no spool: the next capture overflows).
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.wait_for_space(one).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished());
        assert_eq!(q.push(rec(4096)).unwrap(), Pushed::Dropped);
        assert!(!t.join().unwrap(), "bitmap mode: the copy is not wanted");
    }

    #[test]
    fn a_rebase_renumbers_and_the_window_starts_at_the_first_unacknowledged_record() {
        let q = Queue::new(1 << 20, None);
        q.set_base(10);
        assert_eq!(seq(q.push(rec(4096))), 1);
        q.next_batch(100, 1 << 20);
        assert!(q.ack(1));
        // A tag of seq 1, not sent yet.
        let (lost_tag, _) = q.push_tag("t", TagKind::User, 0).unwrap();
        assert_eq!(seq(q.push(rec(4096))), 2);
        assert_eq!(seq(q.push(rec(4096))), 3);
        // The target is back at wire seq 5: local 2 must go out as 6.
        let base = q.rebase(5);
        assert_eq!(base.wrapping_add(2), 6);
        assert!(
            !q.wait_tag(lost_tag, Duration::ZERO),
            "a tag of a lost state is dropped"
        );
        q.open_window_at_unacked("resync");
        q.open_window_at_unacked("resync"); // once
        q.rewind_cursor();
        let b = q.next_batch(100, 1 << 20);
        assert!(matches!(b.as_slice(), [Entry::Record { seq: 2, .. }]));
        let t = q.next_batch(100, 1 << 20);
        assert!(
            matches!(t.as_slice(), [Entry::Tag { seq: 2, tag }] if tag.kind == TagKind::SyncBegin)
        );
        let b = q.next_batch(100, 1 << 20);
        assert!(matches!(b.as_slice(), [Entry::Record { seq: 3, .. }]));
        assert!(q.next_batch(100, 1 << 20).is_empty());
        // A wrapped base works too (a target far behind this run's numbering).
        let q = Queue::new(1 << 20, None);
        q.set_base(0);
        for _ in 0..5 {
            q.push(rec(4096)).unwrap();
        }
        while !q.next_batch(100, 1 << 20).is_empty() {}
        assert!(q.ack(4));
        let base = q.rebase(1);
        assert_eq!(base.wrapping_add(5), 2);
        assert!(q.ack(2u64.wrapping_sub(base)));
        assert!(q.wait_drained(Duration::ZERO));
    }
}
