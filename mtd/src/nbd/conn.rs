//! One client connection in transmission: the export it chose and what was negotiated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::views::exports::Volume;

use super::proto::*;
use rewind_linux::aligned::Pool;

pub struct Conn {
    /// Who, for logs (`127.0.0.1:PORT` or `unix#N`).
    pub peer: String,
    /// Who, for authorisation and logs (`root`, `uid N`, `cert NAME`).
    pub who: String,
    /// The export name as the client gave it.
    pub export: String,
    /// The open export; `None` once released (a point held past `--nbd-max-point-age`).
    pub volume: RwLock<Option<Arc<Volume>>>,
    pub size: u64,
    pub writable: bool,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub base_allocation: bool,
    pub pool: Arc<Pool>,
    pub stats: Stats,
}

impl Conn {
    /// The open export, unless it was released.
    pub fn volume(&self) -> Option<Arc<Volume>> {
        self.volume
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Let go of the export (and its pin, once the requests running on it finish). Returns
    /// whether it was still held.
    pub fn release(&self) -> bool {
        self.volume
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some()
    }
}

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The transmission flags for an export.
///
/// CAN_MULTI_CONN holds: a read-only volume never changes, and every connection to an overlay
/// shares the one `Arc<Overlay>` (same data file, same bitmap), so a FLUSH on one connection
/// makes every connection's completed writes durable. DF is only meaningful (and allowed) with
/// structured replies; we always send a READ as one chunk, so it costs nothing to honour.
pub fn transmission_flags(writable: bool, structured: bool) -> u16 {
    let mut f = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_CAN_MULTI_CONN;
    if writable {
        f |= FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
    } else {
        f |= FLAG_READ_ONLY;
    }
    if structured {
        f |= FLAG_SEND_DF;
    }
    f
}
