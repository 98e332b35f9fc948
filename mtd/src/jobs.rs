//! Long-running control operations (failovers, commit, adopt) run as jobs: the API answers at
//! once with a job id, and `GET /v1/jobs/{id}` shows its progress, its result or its error.
//!
//! One job per group at a time: two operations on one group (a second promotion racing the
//! first, say) would otherwise interleave their steps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rewind_linux::clock::now_ms;

use crate::events::Events;

pub use crate::api::jobs::{JobInfo, JobResult, JobState, JobStep, STEPS_KEPT};

/// Jobs kept after they end, for `GET /v1/jobs`.
const KEEP_ENDED: usize = 200;

/// The handle a job's body reports progress through.
pub struct Job {
    info: Mutex<JobInfo>,
    events: Arc<Events>,
}

impl Job {
    pub fn progress(&self, percent: f64, message: impl Into<String>) {
        let mut i = self.info.lock().expect("job lock");
        i.percent = percent.clamp(0.0, 100.0);
        let message = message.into();
        // A new step when the message changes (a percent moving within a step is not one).
        if i.steps.last().is_none_or(|s| s.message != message) {
            let n = i.steps.last().map_or(1, |s| s.n + 1);
            if i.steps.len() == STEPS_KEPT {
                i.steps.remove(0);
            }
            let percent = i.percent;
            i.steps.push(JobStep {
                n,
                percent,
                message: message.clone(),
            });
        }
        i.message = message;
        tracing::info!(job = i.id, kind = %i.kind, group = %i.group, percent = i.percent, "{}", i.message);
        emit(&self.events, "job.progress", &i);
        if i.kind.starts_with("failover") {
            emit(&self.events, "failover.step", &i);
        }
    }

    pub fn info(&self) -> JobInfo {
        self.info.lock().expect("job lock").clone()
    }
}

/// A job's event (see [`crate::events`]).
fn emit(events: &Events, kind: &'static str, i: &JobInfo) {
    events.emit(
        kind,
        Some(&i.group),
        serde_json::json!({
            "job": i.id,
            "job_kind": i.kind,
            "percent": i.percent,
            "message": i.message,
            "state": i.state,
            "error": i.error,
        }),
    );
}

#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<Job>>>,
    events: Arc<Events>,
}

/// Refused because the group already has a running job.
#[derive(Debug, thiserror::Error)]
#[error("group {group} is busy with job {id} ({kind}: {message}); wait for it (`rewind job {id}`)")]
pub struct Busy {
    pub group: String,
    pub id: u64,
    pub kind: String,
    pub message: String,
}

impl Jobs {
    /// Jobs that report on `events`.
    pub fn new(events: Arc<Events>) -> Jobs {
        Jobs {
            events,
            ..Jobs::default()
        }
    }

    /// Start `body` on its own thread as a job of `group`.
    pub fn spawn(
        self: &Arc<Self>,
        kind: &str,
        group: &str,
        body: impl FnOnce(&Job) -> anyhow::Result<JobResult> + Send + 'static,
    ) -> Result<JobInfo, Busy> {
        let job = {
            let mut map = self.map.lock().expect("jobs lock");
            if let Some(j) = map.values().find(|j| {
                let i = j.info();
                i.group == group && i.state == JobState::Running
            }) {
                let i = j.info();
                return Err(Busy {
                    group: group.into(),
                    id: i.id,
                    kind: i.kind,
                    message: i.message,
                });
            }
            let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            let job = Arc::new(Job {
                info: Mutex::new(JobInfo {
                    id,
                    kind: kind.into(),
                    group: group.into(),
                    state: JobState::Running,
                    percent: 0.0,
                    message: "starting".into(),
                    steps: vec![JobStep {
                        n: 1,
                        percent: 0.0,
                        message: "starting".into(),
                    }],
                    started_ms: now_ms(),
                    ended_ms: None,
                    result: None,
                    error: None,
                }),
                events: self.events.clone(),
            });
            map.insert(id, job.clone());
            let ended: Vec<u64> = map
                .iter()
                .filter(|(_, j)| j.info().state != JobState::Running)
                .map(|(id, _)| *id)
                .collect();
            for id in ended.iter().take(ended.len().saturating_sub(KEEP_ENDED)) {
                map.remove(id);
            }
            job
        };
        let info = job.info();
        emit(&self.events, "job.started", &info);
        let j = job.clone();
        std::thread::Builder::new()
            .name(format!("job-{}", info.id))
            .spawn(move || {
                let r = body(&j);
                let mut i = j.info.lock().expect("job lock");
                i.ended_ms = Some(now_ms());
                match r {
                    Ok(v) => {
                        i.state = JobState::Succeeded;
                        i.percent = 100.0;
                        i.message = "done".into();
                        i.result = Some(v);
                        tracing::info!(job = i.id, kind = %i.kind, group = %i.group, "job succeeded");
                    }
                    Err(e) => {
                        i.state = JobState::Failed;
                        i.error = Some(format!("{e:#}"));
                        tracing::error!(job = i.id, kind = %i.kind, group = %i.group, "job failed: {e:#}");
                    }
                }
                emit(&j.events, "job.finished", &i);
            })
            .expect("spawn job thread");
        Ok(info)
    }

    /// Wait (polling) until job `id` ends; None if there is no such job.
    pub fn wait(&self, id: u64) -> Option<JobInfo> {
        loop {
            let j = self.get(id)?;
            if j.state != JobState::Running {
                return Some(j);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn get(&self, id: u64) -> Option<JobInfo> {
        self.map
            .lock()
            .expect("jobs lock")
            .get(&id)
            .map(|j| j.info())
    }

    pub fn list(&self) -> Vec<JobInfo> {
        self.map
            .lock()
            .expect("jobs lock")
            .values()
            .map(|j| j.info())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wait(jobs: &Jobs, id: u64) -> JobInfo {
        jobs.wait(id).expect("the job exists")
    }

    #[test]
    fn progress_result_error_and_one_job_per_group() {
        let jobs = Arc::new(Jobs::default());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let a = jobs
            .spawn("slow", "g1", move |j| {
                j.progress(50.0, "half way");
                rx.recv().ok();
                Ok(JobResult::of("g1"))
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let busy = jobs
            .spawn("other", "g1", |_| Ok(JobResult::of("g1")))
            .unwrap_err();
        assert_eq!(busy.id, a.id);
        assert!(busy.to_string().contains("half way"), "{busy}");
        let b = jobs
            .spawn("fails", "g2", |_| anyhow::bail!("broken disk"))
            .unwrap();
        let bi = wait(&jobs, b.id);
        assert_eq!(bi.state, JobState::Failed);
        assert_eq!(bi.error.as_deref(), Some("broken disk"));
        assert_eq!(jobs.get(a.id).unwrap().percent, 50.0);
        tx.send(()).unwrap();
        let ai = wait(&jobs, a.id);
        assert_eq!(ai.state, JobState::Succeeded);
        assert_eq!(ai.result, Some(JobResult::of("g1")));
        assert_eq!(jobs.list().len(), 2);
    }

    #[test]
    fn steps_keep_every_message_once_and_the_newest_when_many() {
        let jobs = Arc::new(Jobs::default());
        let j = jobs
            .spawn("steps", "g", |j| {
                j.progress(10.0, "draining");
                j.progress(20.0, "draining");
                j.progress(50.0, "promoting");
                for k in 0..100 {
                    j.progress(60.0, format!("copying {k}"));
                }
                Ok(JobResult::of("g"))
            })
            .unwrap();
        let i = wait(&jobs, j.id);
        let msgs: Vec<&str> = i.steps.iter().map(|s| s.message.as_str()).collect();
        assert_eq!(i.steps.len(), STEPS_KEPT);
        assert_eq!(i.steps.last().unwrap().n, 103);
        assert_eq!(msgs.last(), Some(&"copying 99"));
        let j = jobs
            .spawn("few", "g", |j| {
                j.progress(10.0, "draining");
                j.progress(20.0, "draining");
                j.progress(50.0, "promoting");
                Ok(JobResult::of("g"))
            })
            .unwrap();
        let i = wait(&jobs, j.id);
        let steps: Vec<(u64, f64, &str)> = i
            .steps
            .iter()
            .map(|s| (s.n, s.percent, s.message.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                (1, 0.0, "starting"),
                (2, 10.0, "draining"),
                (3, 50.0, "promoting")
            ]
        );
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[tokio::test]
    async fn jobs_emit_started_progress_and_finished() {
        let events = Arc::new(Events::default());
        let mut sub = events.subscribe();
        let jobs = Arc::new(Jobs::new(events));
        let info = jobs
            .spawn("failover-test", "g1", |job| {
                job.progress(50.0, "booting");
                Ok(JobResult::default())
            })
            .unwrap();
        let mut got = Vec::new();
        while got.last().map(|e: &Arc<crate::events::Event>| e.kind) != Some("job.finished") {
            got.push(sub.next().await.unwrap());
        }
        let kinds: Vec<_> = got.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "job.started",
                "job.progress",
                "failover.step",
                "job.finished"
            ]
        );
        assert!(got.iter().all(|e| e.group.as_deref() == Some("g1")));
        assert_eq!(got[1].fields["message"], "booting");
        assert_eq!(got[3].fields["job"], info.id);
        assert_eq!(got[3].fields["state"], "succeeded");
    }
}
