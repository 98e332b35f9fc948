//! Sync and resync: bringing the target level with the disks, and knowing which regions may
//! differ from it.
//!
//! - [`dirty`]: the persisted dirty-region map (which regions may differ), cleared behind the
//!   target's acknowledgements by [`clear`];
//! - [`thread`]: decides when a pass runs (initial sync, resync after a crash, bitmap mode or a
//!   target that lost data) and keeps its window; [`pass`] reads, compares ([`hashclient`]) and
//!   queues regions under their range locks ([`rangelock`]);
//! - [`progress`]: how it stands, for the status file and the drain;
//! - [`verify`]: the online verify, a report-only compare with the target (and its repair).

pub mod clear;
pub mod dirty;
pub mod hashclient;
pub mod pass;
pub mod progress;
pub mod rangelock;
pub mod thread;
pub mod verify;
pub mod window;
