//! What the queue holds: records and tags, and what it tells about itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_formats::{RecordKind, Seq, TagKind};

use crate::stream::seq::{LocalSeq, SeqBase};
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
        seq: LocalSeq,
        record: Arc<Record>,
    },
    /// Labels the state after local seq `seq` (0: the state the target had at `base`).
    Tag {
        seq: LocalSeq,
        tag: PendingTag,
    },
}

impl Entry {
    /// The local seq: a record's own, or the one a tag labels.
    pub fn seq(&self) -> LocalSeq {
        match self {
            Entry::Record { seq, .. } | Entry::Tag { seq, .. } => *seq,
        }
    }
}

/// Counters for the status file.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueStats {
    pub last_seq: LocalSeq,
    pub acked_seq: LocalSeq,
    pub base: Option<SeqBase>,
    pub queued_bytes: u64,
    pub entries: usize,
    pub spooled_bytes: u64,
    pub spool_capacity: u64,
    pub overflow: bool,
    /// When bitmap mode began.
    pub overflow_since: Option<Instant>,
    /// When the oldest record not yet acknowledged was recorded (None: all acknowledged).
    pub oldest_unacked: Option<Instant>,
    pub dropped: u64,
    pub window_open: bool,
    /// Replication lag over the last [`LAG_WINDOW`] (ms from a write's completion on the
    /// source to the target's acknowledgement): p50, p99, max; `None` without acks.
    pub lag_ms: Option<(u32, u32, u32)>,
    /// Behind a relay: the master target's durable seq (wire), as the relay last said.
    pub target_durable: Option<Seq>,
    /// Behind a relay: when the oldest record the relay acknowledged and the target does not
    /// hold yet was written.
    pub oldest_not_at_target: Option<Instant>,
    /// What the master target holds, in local numbering: `acked_seq`, or behind a relay the
    /// target's durable seq if lower. The dirty-region map clears only up to this.
    pub target_acked: LocalSeq,
}

/// Bytes of one disk's records since the agent started (`len` of every record: zero ranges
/// count the range they cover). Backlog = queued - acked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskTally {
    /// Written by the workload (captured), dropped in bitmap mode or not.
    pub captured: u64,
    /// Put in the stream: captured writes not dropped, and sync copies.
    pub queued: u64,
    /// Handed to the sender (again after a reconnect).
    pub sent: u64,
    /// Acknowledged by the target.
    pub acked: u64,
}

/// What became of a captured write offered to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Recorded with this local seq.
    Seq(LocalSeq),
    /// Dropped (bitmap mode): its regions must be resynced.
    Dropped,
}

impl Pushed {
    pub fn seq(self) -> Option<LocalSeq> {
        match self {
            Pushed::Seq(s) => Some(s),
            Pushed::Dropped => None,
        }
    }
}
