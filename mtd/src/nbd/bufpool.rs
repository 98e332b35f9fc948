//! Payload buffers reused across requests of one connection: a [`Pool`] per connection.
//!
//! A fresh `vec![0; 256 KiB]` per READ costs a zeroing pass (or, for large sizes, page faults on
//! first touch) that is comparable to the read itself from the page cache. A connection's pool
//! keeps at most `keep_bytes`, and all pools together at most [`ALL_CONNECTIONS`], so idle
//! connections hold little, however many there are.

use std::sync::Arc;

use rewind_linux::aligned::{Budget, Limits, Pool};

/// Cached bytes across every connection's pool.
static ALL_CONNECTIONS: Budget = Budget::new(256 << 20);

/// A new connection's pool.
pub fn new() -> Arc<Pool> {
    Pool::with_limits(Limits {
        min_shift: 12, // 4 KiB
        // 32 MiB: the protocol's READ/WRITE limit we advertise; larger is not pooled.
        max_shift: 25,
        keep_per_class: usize::MAX,
        // Enough for nbdcopy's 64 x 256 KiB in flight.
        keep_bytes: 16 << 20,
        shared: Some(&ALL_CONNECTIONS),
    })
}
