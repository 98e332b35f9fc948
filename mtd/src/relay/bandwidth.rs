//! Bandwidth to the master target: one limit for the relay's upstream that follows a weekly
//! schedule (the policies' [`BandwidthSchedule`], the same syntax and UTC times), shared by the
//! groups in turn, with groups behind their RPO target served first.
//!
//! The limit is a token bucket holding at most one second of the current rate, refilled as time
//! passes. A frame takes its size in tokens; one larger than the bucket goes once the bucket is
//! full and leaves it in debt, so the average stays at the rate. Callers queue on a FIFO lock and
//! each takes one frame per turn, so groups sending at once share the link frame by frame. A
//! caller whose group is behind its RPO target is urgent: others hold back before queueing while
//! an urgent one waits. A rate of 0 holds everything until the schedule allows a rate again.

use std::time::Duration;

use rewind_formats::policy::{BandwidthSchedule, Rate, ScheduleError};
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

/// `--bandwidth`'s parser.
pub(crate) fn parse_schedule_arg(s: &str) -> Result<BandwidthSchedule, String> {
    s.parse().map_err(|e: ScheduleError| e.to_string())
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The relay's upstream limit, shared by every group's forwarder.
pub(crate) struct Limiter {
    schedule: BandwidthSchedule,
    bucket: Mutex<Bucket>,
    /// How many urgent callers are waiting.
    urgent: watch::Sender<usize>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts an urgent caller for as long as it waits (also when its future is dropped).
struct UrgentGuard<'a>(&'a watch::Sender<usize>);

impl Drop for UrgentGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Limiter {
    pub(crate) fn new(schedule: BandwidthSchedule) -> Limiter {
        Limiter {
            schedule,
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
            urgent: watch::Sender::new(0),
        }
    }

    /// Wait until `bytes` may go upstream. `urgent`: the group is behind its RPO target.
    pub(crate) async fn acquire(&self, bytes: u64, urgent: bool) {
        if self.schedule.is_unlimited() {
            return;
        }
        let _guard = if urgent {
            self.urgent.send_modify(|n| *n += 1);
            Some(UrgentGuard(&self.urgent))
        } else {
            let mut rx = self.urgent.subscribe();
            let _ = rx.wait_for(|n| *n == 0).await;
            None
        };
        let mut b = self.bucket.lock().await;
        loop {
            let now = Instant::now();
            let rate = match self.schedule.rate_at_unix(unix_now()) {
                Rate::Unlimited => {
                    b.last = now;
                    return;
                }
                Rate::BytesPerSec(0) => {
                    // Held: look at the schedule again in a second.
                    b.last = now;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Rate::BytesPerSec(n) => n as f64,
            };
            let elapsed = now.duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate).min(rate);
            b.last = now;
            // A frame larger than the bucket goes once the bucket is full, leaving a debt.
            let need = (bytes as f64).min(rate);
            if b.tokens >= need {
                b.tokens -= bytes as f64;
                return;
            }
            // Wake at least every second: the schedule may change the rate meanwhile.
            let wait = ((need - b.tokens) / rate).clamp(0.001, 1.0);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn limiter(schedule: &str) -> Limiter {
        Limiter::new(parse_schedule_arg(schedule).unwrap())
    }

    #[tokio::test]
    async fn the_rate_holds_over_many_frames() {
        let l = limiter("*=16MiB/s");
        let t0 = Instant::now();
        for _ in 0..32 {
            l.acquire(MIB, false).await;
        }
        // 32 MiB at 16 MiB/s from an empty bucket: 2 s (a loaded machine only adds).
        let secs = t0.elapsed().as_secs_f64();
        assert!((1.9..=4.0).contains(&secs), "{secs}");
        // A frame larger than the bucket goes once it is full, and its debt is paid after.
        let l = limiter("*=1MiB/s");
        let t0 = Instant::now();
        l.acquire(2 * MIB, false).await;
        l.acquire(64 << 10, false).await;
        let secs = t0.elapsed().as_secs_f64();
        assert!((1.9..=4.0).contains(&secs), "{secs}");
        // Unlimited never waits; a rate of 0 holds.
        let t0 = Instant::now();
        limiter("*=unlimited").acquire(64 * MIB, false).await;
        assert!(t0.elapsed() < Duration::from_millis(100));
        let held = tokio::time::timeout(
            Duration::from_millis(1500),
            limiter("*=0").acquire(1, false),
        )
        .await;
        assert!(held.is_err(), "a rate of 0 let a frame through");
    }

    #[tokio::test]
    async fn groups_share_and_an_urgent_one_goes_first() {
        let l = std::sync::Arc::new(limiter("*=8MiB/s"));
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, urgent) in [("a", false), ("b", false), ("c", true)] {
            let (l, sent) = (l.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..8 {
                    l.acquire(256 << 10, urgent).await;
                    sent.lock().unwrap().push(name);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = sent.lock().unwrap().clone();
        assert_eq!(order.len(), 24);
        // The urgent group finishes before either of the others is half done.
        let last_c = order.iter().rposition(|n| *n == "c").unwrap();
        for other in ["a", "b"] {
            let before = order[..last_c].iter().filter(|n| **n == other).count();
            assert!(
                before <= 2,
                "{other} sent {before} before c finished: {order:?}"
            );
        }
        // The two others take turns: neither is more than one frame ahead once c is done.
        let mut diff = 0i32;
        for n in &order[last_c + 1..] {
            diff += if *n == "a" { 1 } else { -1 };
            assert!(diff.abs() <= 2, "{order:?}");
        }
    }
}
