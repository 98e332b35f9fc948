//! The group's ordered stream in memory: captured writes and sync copies get their seq here, wait
//! for the sender, and stay until the target acknowledges them.
//!
//! Seqs are assigned under one lock, so the order of seqs is the order in which writes were
//! recorded, across all disks of the group. The queue numbers records locally from 1; the sender
//! learns at its first WELCOME where the target stands (`base`, its durable seq) and the wire seq
//! of local seq `s` is `base + s`. That lets capture start before the target is reachable.
//!
//! Memory is bounded by the bytes of data the queue holds. A captured write that does not fit
//! goes to the disk spool ([`crate::stream::spool`]); one that fits in neither is dropped from the
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

mod entry;
mod relayed;
mod send;
mod tags;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rewind_formats::{Seq, TagKind};

use crate::error::{Error, Result};
use crate::stream::seq::{LocalSeq, SeqBase};
use crate::stream::spool::Spool;

pub use entry::{
    DiskTally, Entry, PendingTag, Pushed, QueueStats, Record, ENTRY_OVERHEAD, LAG_WINDOW,
};

struct Inner {
    entries: VecDeque<Entry>,
    /// Index in `entries` of the next entry to send.
    cursor: usize,
    /// Last local seq assigned (0: none).
    last_seq: LocalSeq,
    /// Last local seq the target acknowledged.
    acked: LocalSeq,
    /// Wire seq of local seq 0, once the first WELCOME told it.
    base: Option<SeqBase>,
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
    /// When bitmap mode began (None outside it).
    overflow_since: Option<Instant>,
    /// Bytes per disk, for monitoring (counted here, under the lock every write takes anyway).
    tallies: Vec<DiskTally>,
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
    /// Behind a relay: what the master target holds (see [`relayed`]).
    relayed: relayed::Relayed,
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
                last_seq: LocalSeq(0),
                acked: LocalSeq(0),
                base: None,
                queued_bytes: 0,
                next_tag_id: 1,
                tags_queued: Default::default(),
                tags_dropped: Default::default(),
                spool,
                overflow: false,
                dropped: 0,
                overflow_since: None,
                tallies: Vec::new(),
                pending_begin: None,
                window_open: false,
                kicked: false,
                lag: VecDeque::new(),
                stopping: false,
                waiting: 0,
                relayed: Default::default(),
            }),
            space: Condvar::new(),
            changed: Condvar::new(),
            max_bytes,
        }
    }

    /// Resizes the spool (a policy's `spool_mib`; see [`Spool::set_capacity`]).
    pub fn set_spool_capacity(&self, bytes: u64) {
        if let Some(s) = self.lock().spool.as_mut() {
            s.set_capacity(bytes);
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
        st.tally(record.disk).captured += u64::from(record.len);
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
                    st.overflow_since = Some(Instant::now());
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
    pub fn push_copy(&self, record: Record) -> Result<Option<LocalSeq>> {
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping);
        }
        if st.overflow {
            return Ok(None);
        }
        Ok(Some(self.append(&mut st, record)))
    }

    fn append(&self, st: &mut Inner, record: Record) -> LocalSeq {
        st.last_seq = st.last_seq.next();
        let seq = st.last_seq;
        st.queued_bytes += record.mem_bytes();
        st.tally(record.disk).queued += u64::from(record.len);
        st.entries.push_back(Entry::Record {
            seq,
            record: Arc::new(record),
        });
        if let Some(name) = st.pending_begin.take() {
            Self::append_tag(st, seq, &name, TagKind::SyncBegin, crate::now_ms());
            st.window_open = true;
        }
        if st.waiting > 0 {
            self.changed.notify_all();
        }
        seq
    }

    /// Whether the queue is in bitmap mode.
    pub fn overflowing(&self) -> bool {
        self.lock().overflow
    }

    /// In bitmap mode, counts a captured write of `len` bytes to `disk` as dropped, as
    /// [`Queue::push`] would, without its bytes (so the caller need not copy them): true.
    /// Outside bitmap mode (or when stopping) false: push the record as usual.
    pub fn drop_if_overflowing(&self, disk: u16, len: u32) -> bool {
        let mut st = self.lock();
        if !st.overflow || st.stopping {
            return false;
        }
        st.tally(disk).captured += u64::from(len);
        st.dropped += 1;
        true
    }

    /// Leaves bitmap mode once everything recorded is acknowledged (the resync takes over from
    /// here; the caller opens its window first). False if not drained yet.
    pub fn end_overflow(&self) -> bool {
        let mut st = self.lock();
        if !st.entries.is_empty() {
            return false;
        }
        st.overflow = false;
        st.overflow_since = None;
        true
    }

    /// The last local seq assigned.
    pub fn last_seq(&self) -> LocalSeq {
        self.lock().last_seq
    }

    /// The last local seq the target acknowledged.
    pub fn acked(&self) -> LocalSeq {
        self.lock().acked
    }

    /// The wire seq of local seq 0, once the target's first WELCOME gave it.
    pub fn base(&self) -> Option<SeqBase> {
        self.lock().base
    }

    /// The bytes of a spooled record.
    pub fn read_spooled(&self, record: &Record) -> std::io::Result<Vec<u8>> {
        let (Some(file), Some(pos)) = (&self.spool_file, record.spooled) else {
            return Err(std::io::Error::other("the record is not spooled"));
        };
        crate::stream::spool::read(file, pos, record.len as usize)
    }

    /// Sets the wire seq of local seq 0; only the first call counts. Returns the base in force.
    pub fn set_base(&self, durable: Seq) -> SeqBase {
        let mut st = self.lock();
        let b = *st.base.get_or_insert(SeqBase::at(durable, LocalSeq(0)));
        self.changed.notify_all();
        b
    }

    /// The target lost acknowledged records: from now on local seq `acked + 1` (the first one
    /// not acknowledged) goes out as `durable + 1`. Tags naming acknowledged seqs leave (the
    /// states they name are gone at the target). Returns the new base (wire = base + local,
    /// modulo 2^64: the base may have to be "negative").
    pub fn rebase(&self, durable: Seq) -> SeqBase {
        let mut st = self.lock();
        let base = SeqBase::at(durable, st.acked);
        st.base = Some(base);
        let acked = st.acked;
        // What the target holds is now what it said (local seqs keep their numbers).
        st.relayed.target_local = st.relayed.target_local.map(|t| t.min(acked));
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
                    seq = %e.seq(),
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
            overflow_since: st.overflow_since,
            oldest_unacked: st.entries.iter().find_map(|e| match e {
                Entry::Record { record, .. } => Some(record.recorded_at),
                Entry::Tag { .. } => None,
            }),
            dropped: st.dropped,
            window_open: st.window_open || st.pending_begin.is_some(),
            lag_ms: None,
            target_durable: st.relayed.target,
            oldest_not_at_target: st.relayed.waiting.front().map(|(_, t)| *t),
            target_acked: st
                .relayed
                .target_local
                .map_or(st.acked, |t| t.min(st.acked)),
        };
        drop(st);
        stats.lag_ms = lag_percentiles(lag);
        stats
    }
}

impl Inner {
    /// The tally of `disk`, made on its first record (one allocation per disk per run).
    fn tally(&mut self, disk: u16) -> &mut DiskTally {
        let d = usize::from(disk);
        if self.tallies.len() <= d {
            self.tallies.resize(d + 1, DiskTally::default());
        }
        &mut self.tallies[d]
    }
}

impl Queue {
    /// Bytes per disk so far (index: disk number), for monitoring.
    pub fn tallies(&self) -> Vec<DiskTally> {
        self.lock().tallies.clone()
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
