//! Which zstd level a batch is compressed at.
//!
//! Compression trades the sender's CPU for link bytes. On a protected host that CPU is taken
//! from the workload (zstd level 1 costs about half a core at a few hundred MB/s), so it is spent
//! only where it buys something:
//!
//! - Data that does not shrink (encrypted or already compressed files): once a batch comes out
//!   at [`INCOMPRESSIBLE`] of its size or more, the next batches use zstd's fastest setting
//!   (which stores such data nearly as is, at memcpy-like speed); every [`RETRY_EVERY`] batches
//!   one tries the configured level again, to notice when the data compresses again.
//! - The configured level is used while the link is the
//!   bottleneck, and the fastest setting while it is not. The sender measures how long it waits
//!   on the link (the bandwidth limit and socket writes that block on a full send buffer) in each
//!   [`WINDOW`]. Compressing: it goes fast once waiting at the fast level's byte count would
//!   still take under [`RELAX_BELOW`] of the window (the wait scales with bytes sent). Fast: it
//!   goes back to the configured level once it waits [`BUSY_ABOVE`] of the window.
//!
//! With `adaptive` off (`--fixed-level`), every batch goes at the configured level. Every batch
//! is a zstd frame either way: the target sees no difference.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Compressed/raw ratio at or above which a batch counts as incompressible.
pub const INCOMPRESSIBLE: f64 = 0.95;
/// While the data is incompressible, one batch in this many tries the configured level.
pub const RETRY_EVERY: u32 = 16;
/// zstd's negative levels trade ratio for speed; this far down it hardly looks for matches.
pub const FAST_LEVEL: i32 = -1000;
/// How often the link's load is judged.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Waiting on the link this share of a window means the link is the bottleneck.
pub const BUSY_ABOVE: f64 = 0.3;
/// Below this share (estimated for uncompressed bytes) the link has room to spare.
pub const RELAX_BELOW: f64 = 0.1;

struct State {
    /// The link is the bottleneck: compress at the configured level.
    link_bound: bool,
    /// 0: the data compresses; n > 0: incompressible, n batches since the last retry.
    skipping: u32,
    window_start: Instant,
    waited: Duration,
    raw: u64,
    sent: u64,
}

/// Shared by the sender's compression threads.
pub struct Levels {
    /// The level asked for (`--level`, or a policy's, [`Levels::set_configured`]).
    configured: std::sync::atomic::AtomicI32,
    adaptive: bool,
    state: Mutex<State>,
}

impl Levels {
    pub fn new(configured: i32, adaptive: bool) -> Levels {
        Levels {
            configured: std::sync::atomic::AtomicI32::new(configured),
            adaptive,
            state: Mutex::new(State {
                link_bound: !adaptive,
                skipping: 0,
                window_start: Instant::now(),
                waited: Duration::ZERO,
                raw: 0,
                sent: 0,
            }),
        }
    }

    /// The level asked for.
    pub fn configured(&self) -> i32 {
        self.configured.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ask for another level from the next batch on (a policy's `level`).
    pub fn set_configured(&self, level: i32) {
        self.configured
            .store(level, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The level for the next batch.
    pub fn next(&self) -> i32 {
        let configured = self.configured();
        if !self.adaptive {
            return configured;
        }
        let mut st = self.lock();
        if !st.link_bound {
            return FAST_LEVEL;
        }
        if st.skipping == 0 || st.skipping.is_multiple_of(RETRY_EVERY) {
            return configured;
        }
        st.skipping += 1;
        FAST_LEVEL
    }

    /// How a batch compressed at `level` came out.
    pub fn compressed(&self, level: i32, raw: usize, compressed: usize) {
        if level != self.configured() {
            return;
        }
        let mut st = self.lock();
        st.skipping = u32::from(raw > 0 && compressed as f64 >= raw as f64 * INCOMPRESSIBLE);
    }

    /// A frame of `sent` bytes (`raw` before compression; 0 for frames that are not batches)
    /// went out after waiting `waited` on the link.
    pub fn sent(&self, raw: usize, sent: usize, waited: Duration) {
        if !self.adaptive {
            return;
        }
        let mut st = self.lock();
        st.waited += waited;
        st.raw += raw as u64;
        st.sent += sent as u64;
        let elapsed = st.window_start.elapsed();
        if elapsed < WINDOW {
            return;
        }
        let share = st.waited.as_secs_f64() / elapsed.as_secs_f64();
        if st.link_bound {
            // What the wait would be with the bytes uncompressed.
            let scale = if st.sent > 0 {
                st.raw.max(st.sent) as f64 / st.sent as f64
            } else {
                1.0
            };
            if share * scale < RELAX_BELOW {
                st.link_bound = false;
                tracing::debug!(
                    share,
                    scale,
                    "the link has room: batches at the fastest level"
                );
            }
        } else if share > BUSY_ABOVE {
            st.link_bound = true;
            tracing::debug!(share, "the link is busy: batches at the configured level");
        }
        st.window_start = Instant::now();
        st.waited = Duration::ZERO;
        st.raw = 0;
        st.sent = 0;
    }

    /// Whether batches currently go at the configured level for the link's sake.
    #[cfg(test)]
    pub fn link_bound(&self) -> bool {
        self.lock().link_bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_data_skips_and_retries() {
        let fixed = Levels::new(1, false);
        fixed.compressed(1, 1000, 990);
        assert_eq!(fixed.next(), 1, "a fixed level stays fixed");
        let l = Levels::new(1, true);
        l.sent(0, 0, WINDOW);
        std::thread::sleep(WINDOW);
        l.sent(0, 0, WINDOW);
        assert!(l.link_bound(), "a busy link: the configured level");
        assert_eq!(l.next(), 1);
        l.compressed(1, 1000, 400);
        assert_eq!(l.next(), 1, "compressible: stays");
        l.compressed(1, 1000, 990);
        let levels: Vec<i32> = (0..RETRY_EVERY).map(|_| l.next()).collect();
        assert!(levels[..(RETRY_EVERY - 1) as usize]
            .iter()
            .all(|&x| x == FAST_LEVEL));
        assert_eq!(levels[(RETRY_EVERY - 1) as usize], 1, "a retry");
        l.compressed(1, 1000, 300);
        assert_eq!(l.next(), 1, "compresses again: back to normal");
        l.compressed(FAST_LEVEL, 1000, 1000); // ignored
        assert_eq!(l.next(), 1);
    }

    #[test]
    fn the_configured_level_is_used_while_the_link_is_busy() {
        let l = Levels::new(3, true);
        assert_eq!(
            l.next(),
            FAST_LEVEL,
            "a link with room: no compression effort"
        );
        // A window spent mostly waiting on the link.
        l.sent(1 << 20, 1 << 20, WINDOW / 2);
        std::thread::sleep(WINDOW);
        l.sent(1 << 20, 1 << 20, WINDOW / 2);
        assert!(l.link_bound());
        assert_eq!(l.next(), 3);
        // Compressed 4:1, the wait drops to 5%: uncompressed it would be 20%, so it stays.
        std::thread::sleep(WINDOW);
        l.sent(4 << 20, 1 << 20, WINDOW / 20);
        assert!(l.link_bound());
        // Hardly any wait even scaled up: back to fast.
        std::thread::sleep(WINDOW);
        l.sent(4 << 20, 1 << 20, Duration::from_millis(5));
        assert!(!l.link_bound());
    }
}
