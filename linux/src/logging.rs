//! How every Rewind program logs: `tracing` events to stderr, filtered by `RUST_LOG` or a
//! default level.
//!
//! A log line that cannot be written is dropped, never turned into a panic. By default
//! tracing-subscriber reports a failed write with `eprintln!`, which itself panics when stderr
//! fails: with the log redirected to a file on a full disk, the first thread to log died. In the
//! agent that was a FUSE queue thread, and every write later issued on its CPU hung.

/// Installs the global subscriber: stderr, `RUST_LOG` if set and valid, else `default_level`.
pub fn init(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
}
