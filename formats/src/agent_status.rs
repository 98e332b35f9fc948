//! The agent's status file (`status.json` in its state directory, [`crate::AGENT_STATUS_FILE`]):
//! what `rewind-agent status` prints and what tests and monitoring poll. JSON, rewritten whole a
//! few times a second by the running agent; fields added later carry `#[serde(default)]` so an
//! older file still reads.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the sync (initial sync or resync) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncState {
    /// Waiting for the first WELCOME to decide.
    Pending,
    Running,
    /// Read completely, waiting for the target to acknowledge it.
    Acking,
    Done,
    /// The target already had the group and no region may differ.
    NotNeeded,
    /// Memory and spool were full: writes are tracked as dirty regions until the target has
    /// caught up, then resynced.
    Bitmap,
    /// The last pass failed (retried).
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub group: String,
    pub target: String,
    pub pid: u32,
    pub updated_ms: u64,
    pub connected: bool,
    pub last_error: Option<String>,
    /// Last seq recorded (wire numbering once the target's base is known).
    pub last_seq: u64,
    /// Last seq the target acknowledged as durable (through a relay: durable in the relay's
    /// cache).
    pub acked_seq: u64,
    /// Through a relay: the last seq durable at the master target, as the relay said (absent
    /// when the agent talks to the master target directly: then it is `acked_seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_durable_seq: Option<u64>,
    /// Everything recorded (records and tags) is acknowledged by the target.
    pub caught_up: bool,
    /// Captured data held in memory, waiting to be sent or acknowledged.
    pub queued_bytes: u64,
    /// Captured data in the disk spool.
    #[serde(default)]
    pub spooled_bytes: u64,
    #[serde(default)]
    pub spool_capacity_bytes: u64,
    /// Memory and spool are full: writes are not streamed, only tracked (see [`SyncState::Bitmap`]).
    #[serde(default)]
    pub bitmap_mode: bool,
    /// Writes dropped from the stream in bitmap mode since the agent started.
    #[serde(default)]
    pub dropped_writes: u64,
    /// Regions (1 MiB) that may differ from the target: written and not yet acknowledged.
    #[serde(default)]
    pub dirty_regions: u64,
    /// Regions waiting for a compare with the target.
    #[serde(default)]
    pub pinned_regions: u64,
    /// Regions compared with the target's block hashes by the sync passes of this run.
    #[serde(default)]
    pub compared_regions: u64,
    /// Regions resent whole, without a compare, since the agent started: after a relay lost
    /// batches it acknowledged while the master target kept all it held.
    #[serde(default)]
    pub resent_regions: u64,
    /// How the last loss of acknowledged data was repaired in this run: `resend` (the dirty
    /// regions) or `compare` (every region, by hashes); absent if none was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_loss_repair: Option<String>,
    /// Replication lag over the last 10 s, in ms from a write's completion on the source to
    /// the target's acknowledgement (each acknowledgement counts its oldest record): p50, p99
    /// and max; absent when nothing was acknowledged in that time.
    #[serde(default)]
    pub lag_ms_p50: Option<u32>,
    #[serde(default)]
    pub lag_ms_p99: Option<u32>,
    #[serde(default)]
    pub lag_ms_max: Option<u32>,
    pub sync: SyncState,
    /// `initial-sync` or `resync`: the pass running or last run.
    #[serde(default)]
    pub sync_kind: Option<String>,
    /// Bytes of disk scanned per second by the initial sync (holes and zeros count: this is
    /// how fast the sync gets through the disks), averaged since it started.
    #[serde(default)]
    pub sync_bytes_per_sec: Option<u64>,
    /// The group's generation this agent announces.
    #[serde(default)]
    pub generation: u64,
    /// A drain asked for by the target is in progress (writes refused): its tag name.
    #[serde(default)]
    pub draining: Option<String>,
    /// The drain is done: its tag is acknowledged by the target; writes stay refused.
    #[serde(default)]
    pub drained: Option<Drained>,
    /// The target fenced this agent (the group failed over): the reason. Writes are refused
    /// and the agent does not reconnect.
    #[serde(default)]
    pub fenced: Option<String>,
    /// The replication policy the target sent, as `NAME vN` (none: no policy).
    #[serde(default)]
    pub policy: Option<String>,
    pub disks: Vec<DiskStatus>,
}

/// A finished drain: its Failover tag and the seq it marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drained {
    pub tag: String,
    pub seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiskStatus {
    pub name: String,
    /// The backing device or image file.
    pub path: PathBuf,
    /// The loop device the workload uses.
    pub device: PathBuf,
    /// The link to it (`LINKS_DIR/GROUP/DISK`).
    pub link: PathBuf,
    pub size_bytes: u64,
    /// Progress of the current sync pass over its regions, 0..=100 (100 when none runs).
    pub sync_percent: f64,
    /// Data bytes every sync pass of this run has queued (holes, zeros and blocks equal at the
    /// target are not sent).
    pub sync_sent_bytes: u64,
}
