//! A TCP fault proxy between an agent and its target: it forwards both byte streams and, at
//! random moments, cuts, stalls, slows (latency, bandwidth), truncates, duplicates or corrupts
//! them, each kind selectable and counted. Used by the network-fault tests and by
//! `scripts/bench.sh netfault`.
//!
//! Corruption is only meaningful on plain TCP (`--insecure` on loopback): through TLS a flipped
//! bit fails the record's MAC and the connection drops, which is a cut, not a corruption the
//! protocol's crc32c must catch.
//!
//! - [`kind`]: the fault kinds and their names.
//! - [`plan`]: which kinds, how often, the seed; the random choice of a fault's parameters.
//! - [`injector`]: when the next fault is due, shared by a proxy's connections.
//! - [`pump`]: one direction of one connection, with the fault applied.
//! - [`counters`]: faults injected by kind, connections, bytes.
//! - [`proxy`]: the listener, its thread and runtime.

pub mod counters;
pub mod injector;
pub mod kind;
pub mod plan;
pub mod proxy;
pub mod pump;

pub use counters::{Counters, Counts};
pub use kind::FaultKind;
pub use plan::Plan;
pub use proxy::FaultProxy;
