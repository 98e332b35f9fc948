//! Bandwidth to the master target: one limit for the relay's upstream that follows a weekly
//! schedule, shared by the groups in turn, with groups behind their RPO target served first.
//!
//! The limit is a token bucket holding at most one second of the current rate, refilled as time
//! passes. A frame takes its size in tokens; one larger than the bucket goes once the bucket is
//! full and leaves it in debt, so the average stays at the rate. Callers queue on a FIFO lock and
//! each takes one frame per turn, so groups sending at once share the link frame by frame. A
//! caller whose group is behind its RPO target is urgent: others hold back before queueing while
//! an urgent one waits.
//!
//! Schedules are in UTC (`--bandwidth-window "mon-fri 08:00-18:00 10MiB"`): a relay and the WAN
//! it serves rarely agree on a time zone, and UTC has no daylight-saving jumps.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

/// One window of the week with its rate (None: unlimited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Bit d set: the window applies on weekday d (0 = Monday).
    days: u8,
    /// Minutes since midnight UTC: from `start` (inclusive) to `end` (exclusive, up to 1440).
    start: u16,
    end: u16,
    rate: Option<u64>,
}

/// The weekly schedule: the first window that holds the time gives the rate, else the default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Schedule {
    windows: Vec<Window>,
    default: Option<u64>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A rate as given on the command line (None: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

/// `--bandwidth-limit`'s parser.
pub(crate) fn parse_rate_arg(s: &str) -> Result<Rate, String> {
    parse_rate(s).map(Rate).map_err(|e| format!("{e:#}"))
}

/// `--bandwidth-window`'s parser.
pub(crate) fn parse_window_arg(s: &str) -> Result<Window, String> {
    Window::parse(s).map_err(|e| format!("{e:#}"))
}

/// A rate: `unlimited`, or a size per second (`10MiB`, `10MiB/s`, `500KB`); at least 64 KiB/s
/// (below that a single batch would take longer than the sessions' timeouts).
pub(crate) fn parse_rate(s: &str) -> Result<Option<u64>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let n = crate::daemon::args::parse_bytes(s.strip_suffix("/s").unwrap_or(s))
        .map_err(|e| anyhow!("rate {s:?}: {e}"))?;
    if n < 64 << 10 {
        bail!("rate {s:?} is below 64KiB/s");
    }
    Ok(Some(n))
}

fn parse_days(s: &str) -> Result<u8> {
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| x.eq_ignore_ascii_case(d))
            .ok_or_else(|| anyhow!("{d:?} is not a day (mon, tue, ... sun)"))
    };
    let mut bits = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a > b {
                    bail!("day range {part:?} runs backwards");
                }
                for d in a..=b {
                    bits |= 1 << d;
                }
            }
            None if part == "*" => bits = 0x7f,
            None => bits |= 1 << day(part)?,
        }
    }
    Ok(bits)
}

fn parse_minute(s: &str) -> Result<u16> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("{s:?} is not HH:MM"))?;
    let (h, m): (u16, u16) = (h.parse()?, m.parse()?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        bail!("{s:?} is not a time of day (00:00 to 24:00)");
    }
    Ok(h * 60 + m)
}

impl Window {
    /// `DAYS HH:MM-HH:MM RATE`: DAYS is `mon-fri`, `sat,sun` or `*`.
    pub(crate) fn parse(s: &str) -> Result<Window> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [days, times, rate] = parts[..] else {
            bail!("bandwidth window {s:?}: expected \"DAYS HH:MM-HH:MM RATE\"");
        };
        let what = || format!("bandwidth window {s:?}");
        let (a, b) = times
            .split_once('-')
            .ok_or_else(|| anyhow!("{times:?} is not HH:MM-HH:MM"))
            .with_context(what)?;
        let w = Window {
            days: parse_days(days).with_context(what)?,
            start: parse_minute(a).with_context(what)?,
            end: parse_minute(b).with_context(what)?,
            rate: parse_rate(rate).with_context(what)?,
        };
        if w.start >= w.end {
            bail!("bandwidth window {s:?}: it ends before it starts (split one that spans midnight in two)");
        }
        Ok(w)
    }

    fn holds(&self, weekday: u8, minute: u16) -> bool {
        self.days & (1 << weekday) != 0 && self.start <= minute && minute < self.end
    }
}

impl Schedule {
    pub(crate) fn new(default: Option<u64>, windows: Vec<Window>) -> Schedule {
        Schedule { windows, default }
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.default.is_none() && self.windows.iter().all(|w| w.rate.is_none())
    }

    /// The rate at `unix_secs` (None: unlimited).
    pub(crate) fn rate_at(&self, unix_secs: u64) -> Option<u64> {
        let days = unix_secs / 86_400;
        // 1970-01-01 was a Thursday (weekday 3 counting from Monday).
        let weekday = ((days + 3) % 7) as u8;
        let minute = ((unix_secs % 86_400) / 60) as u16;
        match self.windows.iter().find(|w| w.holds(weekday, minute)) {
            Some(w) => w.rate,
            None => self.default,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The relay's upstream limit, shared by every group's forwarder.
pub(crate) struct Limiter {
    schedule: Schedule,
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
    pub(crate) fn new(schedule: Schedule) -> Limiter {
        Limiter {
            schedule,
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
            urgent: watch::Sender::new(0),
        }
    }

    /// The rate now (None: unlimited).
    pub(crate) fn rate_now(&self) -> Option<u64> {
        self.schedule.rate_at(unix_now())
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
            let Some(rate) = self.rate_now() else {
                b.last = now;
                return;
            };
            let rate = rate as f64;
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

    #[test]
    fn windows_parse_and_pick_the_rate() {
        let s = Schedule::new(
            None,
            vec![
                Window::parse("mon-fri 08:00-18:00 10MiB/s").unwrap(),
                Window::parse("sat,sun 00:00-24:00 1MiB").unwrap(),
            ],
        );
        // 2026-12-07 was a Monday.
        let monday = 20_794 * 86_400;
        assert_eq!(s.rate_at(monday + 9 * 3600), Some(10 * MIB));
        assert_eq!(s.rate_at(monday + 18 * 3600), None);
        assert_eq!(s.rate_at(monday + 7 * 3600 + 59 * 60), None);
        assert_eq!(s.rate_at(monday + 5 * 86_400 + 3600), Some(MIB));
        assert_eq!(s.rate_at(monday + 6 * 86_400 + 23 * 3600), Some(MIB));
        assert_eq!(s.rate_at(monday + 4 * 86_400 + 12 * 3600), Some(10 * MIB));
        let d = Schedule::new(Some(2 * MIB), vec![]);
        assert_eq!(d.rate_at(monday), Some(2 * MIB));
        assert!(!d.is_unlimited());
        assert!(Schedule::default().is_unlimited());
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (spec, says) in [
            ("mon-fri 08:00-18:00", "expected"),
            ("fri-mon 08:00-18:00 1MiB", "backwards"),
            ("someday 08:00-18:00 1MiB", "not a day"),
            ("mon 18:00-08:00 1MiB", "ends before it starts"),
            ("mon 08:00-25:00 1MiB", "not a time of day"),
            ("mon 08:00-09:00 1KiB", "below 64KiB/s"),
            ("mon 08:00-09:00 fast", "rate"),
        ] {
            let e = format!("{:#}", Window::parse(spec).unwrap_err());
            assert!(e.contains(says), "{spec}: {e}");
        }
        assert_eq!(parse_rate("unlimited").unwrap(), None);
    }

    #[tokio::test]
    async fn the_rate_holds_over_many_frames() {
        let l = Limiter::new(Schedule::new(Some(16 * MIB), vec![]));
        let t0 = Instant::now();
        for _ in 0..32 {
            l.acquire(MIB, false).await;
        }
        // 32 MiB at 16 MiB/s from an empty bucket: 2 s (a loaded machine only adds).
        let secs = t0.elapsed().as_secs_f64();
        assert!((1.9..=4.0).contains(&secs), "{secs}");
        // A frame larger than the bucket goes once it is full, and its debt is paid after.
        let l = Limiter::new(Schedule::new(Some(MIB), vec![]));
        let t0 = Instant::now();
        l.acquire(2 * MIB, false).await;
        l.acquire(64 << 10, false).await;
        let secs = t0.elapsed().as_secs_f64();
        assert!((1.9..=4.0).contains(&secs), "{secs}");
    }

    #[tokio::test]
    async fn groups_share_and_an_urgent_one_goes_first() {
        let l = std::sync::Arc::new(Limiter::new(Schedule::new(Some(8 * MIB), vec![])));
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
