//! The Rewind source agent: write capture, sync and resync, and streaming to the master target.
//!
//! ```text
//! workload -> /dev/loopN (LINKS_DIR/GROUP/DISK) -> FUSE file (capture::fuse)
//!   -> capture: mark the region in the dirty-region map (sync::dirty; fdatasync on 0->1),
//!      O_DIRECT write to the backing disk (io_uring, capture::uring; or a synchronous pwrite
//!      with --io-engine sync), then record with a group-wide seq (stream::queue) and reply
//!   -> queue: memory, then the disk spool (stream::spool) when memory is full, then bitmap mode
//!      (writes dropped from the stream, their regions pinned for a resync)
//!   -> sender (stream::sender): BATCH frames (zstd) to rewind-mtd (unix socket or mutual
//!      TLS, stream::wire); ACKs free the queue, and the regions they
//!      cover are cleared from the dirty-region map a few seconds later
//! sync (sync::thread, sync::pass): the initial sync (every region, holes and zeros skipped)
//!   and the resync (pinned regions compared by block hash with the target: HASHES,
//!   sync::hashclient) read under range locks (sync::rangelock) and queue copies like writes,
//!   between SyncBegin and SyncEnd tags (the target's points inside are not recoverable)
//! STATE_DIR (every file named by state::StateDir): status.json, control.sock
//!   (`rewind-agent status` / `tag`), GROUP.dirty (the dirty-region map), GROUP.spool,
//!   GROUP.window (a resync window may be open at the target), GROUP.acked (the last seq the
//!   target acknowledged: a target found below it lost data, and every region is compared)
//! drain (drain/): CONTROL Drain from the target closes the capture to new writes (EROFS), lets
//!   the admitted ones be recorded and a sync finish, and tags the last seq (Failover); a
//!   Fenced refusal stops the sender for good, writes stay refused, and
//!   STATE_DIR/GROUP.fenced keeps the agent from starting again as the group's source
//! metrics (metrics/): Prometheus `/metrics` with `--metrics-listen` (RPO, state, bytes per
//!   disk, spool, capture latency), read at scrape time from the parts above
//! settings (config/): flags and/or a TOML file (config::file); stream::ratelimit caps the
//!   sender's bandwidth; schedule inserts `auto-*` tags every N seconds, freezing filesystems
//!   around them (freeze)
//! ```
//!
//! What a crash costs: the dirty-region map holds every region with a write not yet
//! acknowledged (set durably before the write reaches the disk), so an agent crash or a host
//! reboot is followed by a compare of those regions only. The spool is not replayed (the map
//! covers it). Changes made to a backing disk while no agent runs are not seen; a state dir
//! without a valid map compares every region.
//!
//! Limits of this version (the agent issue has the rest):
//! - The transport is a unix socket, mutual TLS over TCP (the site CA and this agent's
//!   certificate from `rewind-mtd ca`; see `wire`), or plain TCP only with `--insecure` to a
//!   loopback address.
//! - Tags are sent in order after the records they label; one written to a connection that then
//!   breaks before the target's ACK is resent and could be stored twice.
//! - Write overhead (`scripts/bench.sh agent`, 2 vCPUs, target on the same host): see the README.
//!   Capture costs CPU per write (FUSE round trip, copy, zstd, the target's apply on the same
//!   cores); the workload never waits for the link: past memory and spool, bitmap mode.

pub mod agent;
pub mod capture;
pub mod config;
pub mod control;
pub mod drain;
pub mod error;
pub mod freeze;
pub mod metrics;
pub mod policy;
pub mod schedule;
pub mod state;
pub mod stream;
pub mod sync;

pub use error::{Error, Result};
pub use rewind_formats as formats;

/// Wall-clock milliseconds since the Unix epoch: tag and batch timestamps.
pub use rewind_linux::clock::now_ms;
