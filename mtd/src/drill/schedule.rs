//! Drills the target runs by itself: each group whose policy sets `drill_every_secs` gets a
//! drill that often (from the start of its last one, kept across restarts in `last.json`). A
//! drill that cannot start now (an operator's test failover is up, another job runs on the
//! group, nothing is replicated yet) is deferred: logged, told as a `drill.deferred` event with
//! the reason, and tried again after [`retry_after`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rewind_linux::clock::now_ms;

use super::DrillRunner;

/// How often the scheduler looks.
const TICK: Duration = Duration::from_millis(500);

/// A deferred drill is tried again after this (a fraction of its period, 1 s to 5 min).
pub fn retry_after(every_secs: u64) -> Duration {
    Duration::from_secs((every_secs / 4).clamp(1, 300))
}

/// The scheduler thread; stopped by [`Scheduler::stop`] (daemon shutdown).
pub struct Scheduler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    pub fn start(runner: Arc<DrillRunner>) -> Scheduler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("drill-schedule".into())
            .spawn(move || {
                let mut next: BTreeMap<String, u64> = BTreeMap::new();
                while !s.load(Ordering::Relaxed) {
                    tick(&runner, &mut next);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawn the drill scheduler");
        Scheduler {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start every drill that is due. `next`: when each group may be tried next (this run's
/// starts and deferrals; the last drill on disk covers the time before).
fn tick(runner: &Arc<DrillRunner>, next: &mut BTreeMap<String, u64>) {
    let now = now_ms();
    for g in runner.failovers.store().groups() {
        let Some(every) = g.policy().map(|p| p.drill_every_secs).filter(|s| *s > 0) else {
            next.remove(&g.name);
            continue;
        };
        let last = runner
            .status(&g.name)
            .last
            .map_or(0, |r| r.started_ms.saturating_add(every * 1000));
        let due = last.max(next.get(&g.name).copied().unwrap_or(0));
        if now < due {
            continue;
        }
        match runner.start(&g.name, None, true) {
            Ok(job) => {
                tracing::info!(group = %g.name, job = job.id, "scheduled drill started");
                next.insert(g.name.clone(), now + every * 1000);
            }
            Err(e) => {
                let retry = retry_after(every);
                let reason = e.to_string();
                tracing::warn!(group = %g.name, %reason, retry_secs = retry.as_secs(), "scheduled drill deferred");
                runner.failovers.store().events.emit(
                    "drill.deferred",
                    Some(&g.name),
                    serde_json::json!({ "reason": reason, "retry_in_secs": retry.as_secs() }),
                );
                next.insert(g.name.clone(), now + retry.as_millis() as u64);
            }
        }
    }
}
