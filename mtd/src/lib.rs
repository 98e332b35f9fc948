//! rewind-mtd: the master target. It receives agents' delta streams, keeps every replicated disk as
//! a base image plus a journal of its recent history, and reads any point in the retention window.

pub mod access;
pub mod aligned;
pub mod api;
pub mod cli;
pub mod client;
pub mod control;
pub mod daemon;
pub mod drill;
pub mod events;
pub mod failover;
pub mod fusetree;
pub mod jobs;
pub mod limits;
pub mod listen;
pub mod ltr;
pub mod metrics;
pub mod names;
pub mod nbd;
pub mod plan;
pub mod refused;
pub mod relay;
pub mod server;
pub mod store;
pub mod tls;
pub mod verify;
pub mod views;
