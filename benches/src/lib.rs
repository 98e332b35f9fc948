//! Rewind benchmarks and the `rewind-loadgen` load generator.
//!
//! `rewind-loadgen` speaks the agent side of the wire protocol (HELLO, BATCH, TAG; it reads
//! WELCOME, ACK and ERROR) with a deterministic workload, so the master target can be measured and
//! its output checked byte for byte:
//!
//! - [`model`]: where record `seq` goes (disk, offset): a pure function of the workload.
//! - [`pool`]: what record `seq` holds: a slice of a pregenerated data pool.
//! - [`batch`] (from `rewind-formats`): turns records into BATCH frames with as few copies as
//!   possible (none of the record data of large stored records: those go from the pool to the
//!   socket by writev).
//! - [`wire`]: connect, HELLO, send and read frames (also used by tests to send bad frames).
//! - [`session`]: one connection: pipelined sends, an ACK reader thread, the in-flight window.
//! - [`run`]: the `run` command: the workload sent through a session, reconnecting on loss.
//! - [`verify`]: the `verify` command: a dumped view compared with the model image.
//! - [`image`]: the `image` command: a real disk image replicated as records.
//! - [`state`]: the durable "highest acked seq" file.
//! - [`units`]: sizes, disks and addresses as given on the command line.
//! - [`stats`]: percentiles of ack latencies.
//! - [`driver`]: the `rewind-bench` driver behind `scripts/bench.sh`: runs, baselines, bars.
//!
//! [`faultproxy`] is a TCP proxy that injects network faults between agent and target;
//! [`delayproxy`] one that adds latency (a WAN round trip) and nothing else.
//!
//! [`oracle`] is the sector-header oracle: views at points checked against what was written.
//! [`powercut`] is a FUSE file system that simulates power cuts (unsynced writes and directory
//! entries dropped on command), for the power-cut campaigns.
//!
//! [`harness`] is the test harness of both the agent's and the master target's tests: the
//! daemons, the CLI and the agent run as processes, and cleaned up after.

pub mod delayproxy;
pub mod driver;
pub mod error;
pub mod faultproxy;
pub mod harness;
pub mod image;
pub mod model;
pub mod oracle;
pub mod pace;
pub mod pool;
pub mod powercut;
pub mod run;
pub mod session;
pub mod state;
pub mod stats;
pub mod units;
pub mod verify;
pub mod wire;

pub use error::{Error, Result};
pub use model::{Model, Pattern, Workload};
pub use pool::{DataPool, FramePool, Payload};
/// The batch builders live in `rewind-formats`; re-exported for the loadgen's users.
pub use rewind_formats::batch;
pub use units::{parse_size, Addr, DiskSpec};
pub use wire::{
    connect, hello, read_frame, read_message, send_frame, send_message, send_raw, Conn,
};
