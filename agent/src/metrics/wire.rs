//! What went out on the link: frame bytes (zstd-compressed batches and tags) and the batches'
//! bytes before compression, so a dashboard shows the compression ratio.

use std::sync::atomic::{AtomicU64, Ordering};

static RAW: AtomicU64 = AtomicU64::new(0);
static WIRE: AtomicU64 = AtomicU64::new(0);

/// A frame of `wire` bytes went out, `raw` bytes before compression (0 for a tag).
pub fn sent(raw: usize, wire: usize) {
    RAW.fetch_add(raw as u64, Ordering::Relaxed);
    WIRE.fetch_add(wire as u64, Ordering::Relaxed);
}

/// (raw, wire) bytes so far.
pub fn totals() -> (u64, u64) {
    (RAW.load(Ordering::Relaxed), WIRE.load(Ordering::Relaxed))
}
