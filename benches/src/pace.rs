//! A steady send rate for the load generator (`--rate`): before each batch, wait until the bytes
//! sent so far are no more than the rate allows since the first. A workload at a fixed rate is
//! what long campaigns need (the journal they keep stays within the disk), and what a protected
//! host with a known churn looks like.

use std::time::{Duration, Instant};

/// Paces sends to `rate` bytes per second (None: as fast as the target takes them).
#[derive(Debug)]
pub struct Pacer {
    rate: Option<u64>,
    start: Option<Instant>,
    sent: u64,
}

impl Pacer {
    pub fn new(rate: Option<u64>) -> Pacer {
        Pacer {
            rate: rate.filter(|&r| r > 0),
            start: None,
            sent: 0,
        }
    }

    /// How long to wait before sending `bytes` more (zero when on schedule or unpaced); counts
    /// them as sent.
    pub fn delay_for(&mut self, bytes: u64, now: Instant) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let start = *self.start.get_or_insert(now);
        let due = start + Duration::from_secs_f64(self.sent as f64 / rate as f64);
        self.sent += bytes;
        due.saturating_duration_since(now)
    }

    /// Waits as [`Pacer::delay_for`] says.
    pub fn wait(&mut self, bytes: u64) {
        let d = self.delay_for(bytes, Instant::now());
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_rate_allows_the_next_batch() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(1 << 20));
        assert_eq!(
            p.delay_for(1 << 20, t0),
            Duration::ZERO,
            "the first goes at once"
        );
        // 1 MiB sent at 1 MiB/s: the next is due a second after the first.
        let d = p.delay_for(1 << 19, t0 + Duration::from_millis(200));
        assert_eq!(d, Duration::from_millis(800));
        let d = p.delay_for(1 << 19, t0 + Duration::from_secs(3));
        assert_eq!(d, Duration::ZERO, "behind schedule: no wait");
        let mut free = Pacer::new(None);
        assert_eq!(free.delay_for(u64::MAX / 2, t0), Duration::ZERO);
    }
}
