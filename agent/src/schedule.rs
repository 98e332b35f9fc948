//! Scheduled tags: every N seconds, freeze the listed filesystems, insert a tag named
//! `auto-YYYYMMDD-HHMMSS` (UTC), thaw. N and the filesystems come from the policy in force
//! (`app_consistent_every_secs`, `freeze`; 0 means no scheduled points), else from `--tag-every`
//! and `--tag-freeze`; a policy change takes effect at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewind_formats::TagKind;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::freeze;
use crate::now_ms;
use crate::policy::PolicyCtl;
use crate::stream::queue::Queue;

/// How often a sleeping scheduler looks at `stop` (so shutdown never waits a whole period).
const STOP_POLL: Duration = Duration::from_millis(100);

/// Starts the scheduler thread. It ends soon after `stop` is set, or when the queue is
/// stopping.
pub fn spawn(
    settings: Arc<Settings>,
    queue: Arc<Queue>,
    policy: Arc<PolicyCtl>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tag-schedule".into())
        .spawn(move || {
            // The period runs from the end of one tag to the next (not on a fixed clock), so
            // a slow freeze never makes two tags in the same second (their names would clash).
            let mut last = Instant::now();
            let mut was = None;
            while sleep_unless_stopped(STOP_POLL, &stop) {
                let now = schedule(&settings, &policy);
                if now != was {
                    tracing::info!(schedule = ?now, "scheduled points (every seconds, freeze)");
                    was = now.clone();
                }
                let Some((every, freeze)) = now else {
                    last = Instant::now();
                    continue;
                };
                if last.elapsed() < Duration::from_secs(every.max(1)) {
                    continue;
                }
                if !tag_once(&freeze, &queue) {
                    return;
                }
                last = Instant::now();
            }
        })
        .map_err(Error::path("starting the tag schedule thread", "-"))
}

/// The schedule in force: the policy's while one is, else the command line's.
fn schedule(settings: &Settings, policy: &PolicyCtl) -> Option<(u64, Vec<PathBuf>)> {
    match policy.tag_schedule() {
        Some(from_policy) => from_policy
            .map(|(every, freeze)| (every, freeze.into_iter().map(PathBuf::from).collect())),
        None => settings
            .tag_every_secs
            .map(|every| (every, settings.tag_freeze.clone())),
    }
}

/// Sleeps `d` in small steps; false as soon as `stop` is set.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(STOP_POLL.min(until - now));
    }
}

/// One scheduled tag. Returns false when the agent is stopping.
fn tag_once(mountpoints: &[PathBuf], queue: &Queue) -> bool {
    let now = now_ms();
    let name = auto_name(now / 1000);
    // Not while a sync runs or in bitmap mode: the tag would be refused, so freezing the
    // workload's filesystems would be for nothing.
    let q = queue.stats();
    if q.window_open || q.overflow {
        tracing::info!(tag = %name, "scheduled tag skipped: a sync is running or the agent is \
            in bitmap mode (the point would not be recoverable)");
        return true;
    }
    let (frozen, froze) = freeze::freeze(mountpoints);
    let pushed = match froze {
        Ok(()) => {
            let kind = if frozen.is_empty() {
                TagKind::User
            } else {
                TagKind::AppConsistent
            };
            Some(queue.push_tag(&name, kind, now).map(|r| (r, kind)))
        }
        // No tag: an app-consistent tag would be a lie, and every seq is already a
        // crash-consistent point on the target.
        Err(e) => {
            tracing::warn!(tag = %name, error = %e, "scheduled tag skipped: freezing failed");
            None
        }
    };
    let thawed = freeze::thaw(&frozen);
    match pushed {
        Some(Ok(((id, seq), kind))) => {
            tracing::info!(tag = %name, ?kind, id, seq = seq.map(|s| s.0), frozen = frozen.len(),
                thawed = thawed.is_ok(), "scheduled tag queued");
        }
        Some(Err(Error::Stopping)) => return false,
        // Before the first write there is nothing to tag: wait for the next period.
        Some(Err(e)) => tracing::info!(tag = %name, reason = %e, "scheduled tag not taken"),
        None => {}
    }
    true
}

/// `auto-YYYYMMDD-HHMMSS` for a unix time in seconds, in UTC.
pub fn auto_name(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    format!(
        "auto-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`, which counts in 400-year eras starting on March 1st so that leap days
/// fall at the end of each year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_names_are_utc_calendar_times() {
        assert_eq!(auto_name(0), "auto-19700101-000000");
        // 2000-02-29 23:59:59 (a leap day in a year divisible by 400).
        assert_eq!(auto_name(951_868_799), "auto-20000229-235959");
        assert_eq!(auto_name(951_868_800), "auto-20000301-000000");
        // 2026-11-26 10:37:59.
        assert_eq!(auto_name(1_795_689_479), "auto-20261126-103759");
        // 2100 is not a leap year.
        assert_eq!(auto_name(4_107_542_400), "auto-21000301-000000");
        assert!(rewind_formats::validate_name(&auto_name(1_795_689_479)).is_ok());
    }

    #[test]
    fn stop_ends_the_sleep_quickly() {
        let stop = AtomicBool::new(true);
        let t0 = Instant::now();
        assert!(!sleep_unless_stopped(Duration::from_secs(60), &stop));
        assert!(t0.elapsed() < Duration::from_millis(50));
        let go = AtomicBool::new(false);
        assert!(sleep_unless_stopped(Duration::from_millis(10), &go));
    }

    #[test]
    fn a_schedule_tags_once_writes_exist_and_stops() {
        let settings = Settings {
            agent: "a".into(),
            group: rewind_formats::GroupName::new("g").unwrap(),
            disks: vec![],
            target: crate::config::TargetAddr::Unix("/x".into()),
            more_targets: vec![],
            state_dir: "/s".into(),
            level: 1,
            generation: 1,
            mount_dir: "/m".into(),
            links_dir: "/l".into(),
            max_queue_bytes: 16 << 20,
            fuse_threads: 1,
            io_engine: Default::default(),
            fuse_transport: Default::default(),
            bandwidth_bytes_per_sec: None,
            tag_every_secs: Some(1),
            metrics_listen: None,
            rpo_target_secs: None,
            tag_freeze: vec![],
            spool_bytes: 0,
            fixed_level: false,
            tls: None,
            insecure: false,
            tls_client: None,
        };
        let queue = Arc::new(Queue::new(16 << 20, None));
        let stop = Arc::new(AtomicBool::new(false));
        // No policy kept in this (absent) state dir: the command line's schedule applies.
        let policy = Arc::new(PolicyCtl::load(
            &crate::state::StateDir::new(std::path::Path::new("/nonexistent-rewind-test"), "g"),
            Arc::new(crate::stream::ratelimit::RateLimit::new(None)),
            Arc::new(crate::stream::levels::Levels::new(1, false)),
            Arc::clone(&queue),
        ));
        let mut none = settings.clone();
        none.tag_every_secs = None;
        assert_eq!(schedule(&none, &policy), None);
        assert_eq!(schedule(&settings, &policy), Some((1, vec![])));
        // Nothing written yet: the first period passes without a tag, and without ending.
        let h = spawn(
            Arc::new(settings),
            Arc::clone(&queue),
            policy,
            Arc::clone(&stop),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(1300));
        assert_eq!(queue.stats().entries, 0);
        assert!(!h.is_finished());
        stop.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        h.join().unwrap();
        assert!(t0.elapsed() < Duration::from_millis(500));
    }
}
