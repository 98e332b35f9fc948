//! What the relay counts: bytes taken in from agents (frames cached), bytes sent to the master
//! target and blocks deduplicated on the way, shown on `--metrics-listen` as Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: AtomicU64,
    full_waits: AtomicU64,
    dedup_blocks: AtomicU64,
}

impl Counters {
    pub(crate) fn in_(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Blocks sent upstream as references to earlier ones.
    pub(crate) fn dedup(&self, blocks: u64) {
        self.dedup_blocks.fetch_add(blocks, Ordering::Relaxed);
    }

    pub(crate) fn full(&self) {
        self.full_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub(crate) fn render(&self, cache_used: u64, cache_limit: u64) -> String {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP rewind_relay_bytes_in_total Frame bytes the relay took in from agents (cached).\n\
             # TYPE rewind_relay_bytes_in_total counter\n\
             rewind_relay_bytes_in_total {}\n\
             # HELP rewind_relay_bytes_out_total Frame bytes the relay sent to the master target.\n\
             # TYPE rewind_relay_bytes_out_total counter\n\
             rewind_relay_bytes_out_total {}\n\
             # HELP rewind_relay_frames_in_total Frames the relay cached.\n\
             # TYPE rewind_relay_frames_in_total counter\n\
             rewind_relay_frames_in_total {}\n\
             # HELP rewind_relay_cache_full_total Times an agent's frame waited for room in the cache.\n\
             # TYPE rewind_relay_cache_full_total counter\n\
             rewind_relay_cache_full_total {}\n\
             # HELP rewind_relay_dedup_blocks_total 4 KiB blocks sent upstream as references to blocks sent before.\n\
             # TYPE rewind_relay_dedup_blocks_total counter\n\
             rewind_relay_dedup_blocks_total {}\n\
             # HELP rewind_relay_cache_bytes Bytes the cache holds.\n\
             # TYPE rewind_relay_cache_bytes gauge\n\
             rewind_relay_cache_bytes {cache_used}\n\
             # HELP rewind_relay_cache_limit_bytes The cache's size limit (--cache-size).\n\
             # TYPE rewind_relay_cache_limit_bytes gauge\n\
             rewind_relay_cache_limit_bytes {cache_limit}\n",
            v(&self.bytes_in),
            v(&self.bytes_out),
            v(&self.frames_in),
            v(&self.full_waits),
            v(&self.dedup_blocks),
        )
    }
}
