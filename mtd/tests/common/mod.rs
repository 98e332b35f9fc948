//! The master target's tests run on the shared test harness (`rewind_benches::harness`, also
//! used by the agent's tests): the real daemon, CLI, agent and load generator as processes, and
//! cleanup after them (by pid, even when a test fails). What only these tests need is here.

// (Only the TLS and certificate tests use it; every other test binary compiles it unused.)
#[allow(dead_code)]
pub mod tls_agent;

// (Only the NBD-over-TLS tests use it.)
#[allow(dead_code)]
pub mod nbd_pki;

// (Only the planned failover tests, at the target and through a relay, use it.)
#[allow(dead_code)]
pub mod refused_writer;

// (Only the shortage tests fill a small file system.)
#[allow(dead_code)]
pub mod smallfs;

// (Only the relay tests run relays.)
#[allow(dead_code)]
pub mod relay;

pub use rewind_benches::harness::*;
