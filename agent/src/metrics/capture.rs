//! `rewind_capture_seconds`: how long a workload's write waits in the agent, from the FUSE
//! request to its reply (on the backing disk, marked dirty, recorded in the stream).

use std::sync::LazyLock;

use rewind_linux::metrics::LatencyHistogram;

/// Fed by the capture's write reply (an atomic add per write).
pub static LATENCY: LazyLock<LatencyHistogram> = LazyLock::new(LatencyHistogram::default);
