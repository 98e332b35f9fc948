//! The daemon's long-term retention pass, on a thread of its own: every `interval`, each group
//! whose policy has a tier on gets the points its periods keep archived (one `ltr-archive` job
//! per group at a time, under the job key `ltr/GROUP` so that it never holds off a failover of
//! the group), and points kept longer by a newer period have their expiry extended; every
//! `gc_interval`, garbage is collected.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rewind_linux::clock::now_ms;

use super::schedule::{self, Clock};
use super::Ltr;
use crate::jobs::{JobResult, Jobs};
use crate::store::group::Group;
use crate::store::kept::PeriodPoint;
use crate::store::Store;

pub struct Service {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    pub fn start(store: Arc<Store>, ltr: Arc<Ltr>, jobs: Arc<Jobs>) -> Service {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let clock = Clock::new(ltr.opts.test_hour);
        let thread = std::thread::Builder::new()
            .name("ltr-schedule".into())
            .spawn(move || {
                let mut last_gc = now_ms();
                while !s.load(Ordering::Relaxed) {
                    for g in store.groups() {
                        tick(&g, &ltr, &jobs, &clock);
                    }
                    let now = now_ms();
                    if now.saturating_sub(last_gc) >= ltr.opts.gc_interval.as_millis() as u64 {
                        last_gc = now;
                        if let Err(e) = ltr.gc(now, ltr.opts.gc_grace.as_millis() as u64) {
                            tracing::error!(error = %e, "long-term garbage collection failed");
                        }
                    }
                    // Sleep in small steps so that a stop is quick.
                    let until = now_ms() + ltr.opts.interval.as_millis() as u64;
                    while !s.load(Ordering::Relaxed) && now_ms() < until {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            })
            .expect("spawn the long-term retention thread");
        Service {
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

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The points a group's tiers keep now, by seq, each with its latest expiry.
pub fn wanted(g: &Group, clock: &Clock, now: u64) -> BTreeMap<u64, (PeriodPoint, u64)> {
    let mut out: BTreeMap<u64, (PeriodPoint, u64)> = BTreeMap::new();
    let Some(p) = g.policy().filter(|p| p.ltr_on()) else {
        return out;
    };
    let newest = g.newest_time().unwrap_or(0);
    for period in schedule::periods(&p, now, clock) {
        // Final once a newer point exists, or the period has settled (an idle disk).
        let settled = newest >= period.end_ms || now >= period.end_ms + clock.settle_ms();
        if !settled || period.keep_until_ms < now {
            continue;
        }
        let Some(pp) = g.period_point(period.start_ms, period.end_ms) else {
            continue;
        };
        let e = out
            .entry(pp.seq.0)
            .or_insert_with(|| (pp.clone(), period.keep_until_ms));
        e.1 = e.1.max(period.keep_until_ms);
    }
    out
}

fn tick(g: &Arc<Group>, ltr: &Arc<Ltr>, jobs: &Arc<Jobs>, clock: &Clock) {
    let want = wanted(g, clock, now_ms());
    if want.is_empty() {
        return;
    }
    let mut archive = Vec::new();
    let mut extend = Vec::new();
    for (ix, (disk, _)) in g.disks().into_iter().enumerate() {
        for (seq, (pp, keep)) in &want {
            match ltr
                .catalog
                .lock()
                .expect("catalog lock")
                .get(&g.name, &disk, *seq)
            {
                Some(k) if k.keep_until_ms >= *keep => {}
                Some(k) => extend.push((k.clone(), *keep)),
                None => archive.push((ix, disk.clone(), pp.clone(), *keep)),
            }
        }
    }
    if archive.is_empty() && extend.is_empty() {
        return;
    }
    let (g2, l2) = (g.clone(), ltr.clone());
    let key = format!("ltr/{}", g.name);
    let r = jobs.spawn("ltr-archive", &key, move |job| {
        for (k, keep) in &extend {
            let extended = l2.extend(k, *keep)?;
            if extended > 0 {
                job.progress(
                    0.0,
                    format!(
                        "kept {}/{} seq {} longer: the lock of {extended} chunks extended",
                        k.group, k.disk, k.seq
                    ),
                );
            }
        }
        let total = archive.len().max(1) as f64;
        for (n, (ix, disk, pp, keep)) in archive.iter().enumerate() {
            let msg = format!("archiving {}/{disk} seq {}", g2.name, pp.seq.0);
            job.progress(100.0 * n as f64 / total, msg.clone());
            let s = l2.archive(&g2, *ix, pp, *keep, &|pct| {
                job.progress(100.0 * (n as f64 + pct / 100.0) / total, msg.clone())
            })?;
            let mut done = format!(
                "archived {}/{disk} seq {}: {} chunks, {} uploaded ({} bytes)",
                g2.name, pp.seq.0, s.chunks, s.uploaded, s.uploaded_bytes
            );
            if l2.opts.object_lock.is_some() {
                done += &format!(
                    ", {} objects locked, the lock of {} reused chunks extended",
                    s.locked, s.lock_extended
                );
            }
            job.progress(100.0 * (n + 1) as f64 / total, done);
        }
        Ok(JobResult::of(g2.name.clone()))
    });
    if let Err(busy) = r {
        tracing::debug!(group = %g.name, job = busy.id, "long-term archive still running");
    }
}
