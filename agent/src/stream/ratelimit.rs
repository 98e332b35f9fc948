//! The sender's bandwidth limit: a token bucket over the bytes written to the target.
//!
//! The bucket holds at most a quarter second of rate, so a short pause does not earn a long
//! burst. A frame larger than that is not split (frames are whole protocol messages): it takes
//! what the bucket has and goes into debt, sleeping first for its share of the rate, so the
//! average holds either way. The bucket starts empty: the rate holds from the first byte.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest burst, as a fraction of a second's worth of rate.
const BURST_SECS: f64 = 0.25;

/// A bandwidth limit shared by whoever sends; unlimited costs one atomic load per call. A policy
/// changes the rate while it runs ([`RateLimit::set`]).
#[derive(Debug)]
pub struct RateLimit {
    limited: AtomicBool,
    bucket: Mutex<Option<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    bytes_per_sec: f64,
    burst: f64,
    /// Bytes that may go now; negative while a large frame's debt is being paid off.
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    /// `None`, or `Some(0)` (which validation refuses anyway), is unlimited.
    pub fn new(bytes_per_sec: Option<u64>) -> RateLimit {
        let l = RateLimit {
            limited: AtomicBool::new(false),
            bucket: Mutex::new(None),
        };
        l.set(bytes_per_sec);
        l
    }

    /// The rate now in force (`None`: unlimited).
    pub fn rate(&self) -> Option<u64> {
        let b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        b.as_ref().map(|b| b.bytes_per_sec as u64)
    }

    /// Change the rate (`None` or 0: unlimited). The same rate again changes nothing; a new one
    /// starts from an empty bucket.
    pub fn set(&self, bytes_per_sec: Option<u64>) {
        let want = bytes_per_sec.filter(|&r| r > 0);
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if b.as_ref().map(|b| b.bytes_per_sec as u64) == want {
            return;
        }
        *b = want.map(|r| {
            let rate = r as f64;
            Bucket {
                bytes_per_sec: rate,
                burst: (rate * BURST_SECS).max(1.0),
                tokens: 0.0,
                refilled: Instant::now(),
            }
        });
        self.limited.store(b.is_some(), Ordering::Relaxed);
    }

    /// Blocks until `bytes` may be sent.
    pub fn take(&self, bytes: u64) {
        if !self.limited.load(Ordering::Relaxed) {
            return;
        }
        // The lock is held while sleeping on purpose: concurrent senders queue behind each
        // other instead of all spending the same tokens.
        let mut guard = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = guard.as_mut() else {
            return;
        };
        let now = Instant::now();
        let earned = now.duration_since(b.refilled).as_secs_f64() * b.bytes_per_sec;
        b.tokens = (b.tokens + earned).min(b.burst);
        b.refilled = now;
        b.tokens -= bytes as f64;
        if b.tokens < 0.0 {
            std::thread::sleep(Duration::from_secs_f64(-b.tokens / b.bytes_per_sec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_does_not_wait() {
        let l = RateLimit::new(None);
        let t0 = Instant::now();
        for _ in 0..1000 {
            l.take(1 << 30);
        }
        assert!(t0.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn small_takes_hold_the_rate() {
        // 4 MiB at 8 MiB/s: 0.5 s from an empty bucket.
        let l = RateLimit::new(Some(8 << 20));
        let t0 = Instant::now();
        for _ in 0..64 {
            l.take(64 << 10);
        }
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn a_frame_larger_than_the_burst_waits_its_share() {
        let l = RateLimit::new(Some(8 << 20));
        let t0 = Instant::now();
        l.take(4 << 20);
        let first = t0.elapsed();
        assert!(first >= Duration::from_millis(400), "{first:?}");
        // The next one pays for itself, not again for the first.
        l.take(1 << 20);
        let both = t0.elapsed();
        assert!(both >= Duration::from_millis(550), "{both:?}");
        assert!(both < Duration::from_millis(1500), "{both:?}");
    }

    #[test]
    fn the_rate_changes_while_it_runs() {
        let l = RateLimit::new(None);
        l.set(Some(8 << 20));
        assert_eq!(l.rate(), Some(8 << 20));
        let t0 = Instant::now();
        l.take(4 << 20);
        assert!(t0.elapsed() >= Duration::from_millis(400));
        l.set(None);
        let t0 = Instant::now();
        l.take(1 << 30);
        assert!(t0.elapsed() < Duration::from_millis(50));
        assert_eq!(l.rate(), None);
    }

    #[test]
    fn an_idle_pause_earns_at_most_the_burst() {
        let l = RateLimit::new(Some(8 << 20));
        std::thread::sleep(Duration::from_millis(600));
        // The burst (2 MiB) goes at once; the other 2 MiB take 0.25 s.
        let t0 = Instant::now();
        l.take(2 << 20);
        assert!(t0.elapsed() < Duration::from_millis(100));
        l.take(2 << 20);
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
    }
}
