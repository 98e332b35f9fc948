//! Sync and resync.

pub mod dirty;
pub mod hashclient;
pub mod pass;
pub mod rangelock;
