//! The Rewind source agent: write capture, initial sync and streaming to the master target.
//!
//! ```text
//! workload -> /dev/loopN (LINKS_DIR/GROUP/DISK) -> FUSE file (capture::fuse)
//!   -> capture: O_DIRECT write to the backing disk (io_uring, capture::uring; or a synchronous
//!      pwrite with --io-engine sync), then record with a group-wide seq (queue) and reply
//!   -> sender: BATCH frames (zstd) to rewind-mtd (unix socket or mutual TLS), ACKs free the
//!      queue
//! sync: reads each disk under range locks (rangelock) and queues it like writes, between
//!   SyncBegin and SyncEnd tags (the target's points inside are not recoverable)
//! status.json and control.sock in the state dir: `rewind-agent status` / `tag`
//! ```
//!
//! Limits of this version (the agent issue has the rest):
//! - Unacknowledged records live only in memory (bounded by `max_queue_bytes`): when the queue
//!   is full, writers wait (a target outage longer than the queue stalls the workload), and an
//!   agent crash loses them. The disk spool and the persisted dirty-region bitmap come next.
//! - An agent restarted against a target that has the group, after a completed sync, resumes
//!   numbering after the target's durable seq but cannot know what changed while it was down
//!   (bitmap and HASHES resync come later). An agent that died mid-sync syncs again in full.
//! - The transport is a unix socket, mutual TLS over TCP (the site CA and this agent's
//!   certificate from `rewind-mtd ca`; see `wire`), or plain TCP only with `--insecure` to a
//!   loopback address. No bandwidth limit, no scheduled tags, no TOML config file yet
//!   (`Settings` is ready to be deserialised).
//! - Tags are sent in order after the records they label; one written to a connection that then
//!   breaks before the target's ACK is resent and could be stored twice.
//! - Write overhead (agent/bench-overhead.sh, 2 vCPUs, target on the same host): random 4 KiB
//!   writes reach about 0.4x a plain loop device, sequential 1 MiB about 0.1x. Once the memory
//!   queue is full, throughput is what the sender can compress (zstd level 1, one core: about
//!   350 MB/s) and the target can store, on the same two cores; lower `--level` (down to -7)
//!   helps; a spool would absorb bursts.

pub mod agent;
pub mod aligned;
pub mod capture;
pub mod config;
pub mod control;
pub mod error;
pub mod inflight;
pub mod queue;
pub mod rangelock;
pub mod sender;
pub mod status;
pub mod sync;
pub mod wire;

pub use error::{Error, Result};
pub use rewind_formats as formats;
