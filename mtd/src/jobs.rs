//! Long-running control operations (failovers, commit, adopt) run as jobs: the API answers at
//! once with a job id, and `GET /v1/jobs/{id}` shows its progress, its result or its error.
//!
//! One job per group at a time: two operations on one group (a second promotion racing the
//! first, say) would otherwise interleave their steps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use rewind_linux::clock::now_ms;

/// Jobs kept after they end, for `GET /v1/jobs`.
const KEEP_ENDED: usize = 200;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    /// What it does: `failover-test`, `failover-planned`, `commit`, ...
    pub kind: String,
    pub group: String,
    pub state: JobState,
    pub percent: f64,
    /// The step it is on (or ended with).
    pub message: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// The handle a job's body reports progress through.
pub struct Job {
    info: Mutex<JobInfo>,
}

impl Job {
    pub fn progress(&self, percent: f64, message: impl Into<String>) {
        let mut i = self.info.lock().expect("job lock");
        i.percent = percent.clamp(0.0, 100.0);
        i.message = message.into();
        tracing::info!(job = i.id, kind = %i.kind, group = %i.group, percent = i.percent, "{}", i.message);
    }

    pub fn info(&self) -> JobInfo {
        self.info.lock().expect("job lock").clone()
    }
}

#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<Job>>>,
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
    /// Start `body` on its own thread as a job of `group`.
    pub fn spawn(
        self: &Arc<Self>,
        kind: &str,
        group: &str,
        body: impl FnOnce(&Job) -> anyhow::Result<Value> + Send + 'static,
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
                    started_ms: now_ms(),
                    ended_ms: None,
                    result: None,
                    error: None,
                }),
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
                Ok(serde_json::json!({"x": 1}))
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let busy = jobs.spawn("other", "g1", |_| Ok(Value::Null)).unwrap_err();
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
        assert_eq!(ai.result, Some(serde_json::json!({"x": 1})));
        assert_eq!(jobs.list().len(), 2);
    }
}
