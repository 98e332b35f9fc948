//! A target's job mirrored into a site job: its percent becomes the site job's `done` (each
//! target job one hundred units of the site job's `total`), its current step the site job's
//! detail, and every change a `job.progress` event.

use std::time::{Duration, Instant};

use rewind_mtd::api::jobs::{JobInfo, JobResult, JobState};

use super::call::TargetConn;
use crate::error::ApiError;
use crate::server::AppState;

/// How often the target's job is read.
const EVERY: Duration = Duration::from_millis(300);
/// How long a target may stay unreachable before the site job gives up on it.
const UNREACHABLE: Duration = Duration::from_secs(60);

/// Follow target job `tj` to its end; `base` is the site job's `done` before it. The result
/// of a job that succeeded, or why it failed (the site job is left `running` either way: the
/// caller decides what comes next).
pub async fn follow(
    st: &AppState,
    job: i64,
    tc: &TargetConn,
    tj: JobInfo,
    base: i64,
) -> Result<JobResult, String> {
    let name = tc.target.name.clone();
    let path = format!("/v1/jobs/{}", tj.id);
    let mut last = (-1_i64, String::new());
    let mut unreachable_since: Option<Instant> = None;
    let mut info = tj;
    loop {
        let done = base + info.percent.clamp(0.0, 100.0) as i64;
        let detail = format!(
            "target {name} job {} ({}): {}",
            info.id, info.kind, info.message
        );
        if (done, detail.clone()) != last {
            if let Err(e) = st.db.job_step(job, done, "running", &detail).await {
                tracing::warn!(job, error = %e, "recording job progress");
            }
            last = (done, detail);
        }
        match info.state {
            JobState::Succeeded => {
                return Ok(info.result.unwrap_or_else(|| JobResult::of(&info.group)));
            }
            JobState::Failed => {
                return Err(format!(
                    "target {name} job {} ({}) failed: {}",
                    info.id,
                    info.kind,
                    info.error.unwrap_or(info.message)
                ));
            }
            JobState::Running => {}
        }
        tokio::time::sleep(EVERY).await;
        match tc.call_as::<JobInfo>("GET", &path, None).await {
            Ok(i) => {
                unreachable_since = None;
                info = i;
            }
            Err(e) if e.status == 404 => {
                // A target that restarted has forgotten its jobs: what it did is in its state.
                return Err(format!(
                    "target {name} no longer knows job {} (it restarted?): see \
                     `GET /v1/groups/{}/failover`",
                    info.id, info.group
                ));
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE {
                    return Err(format!(
                        "lost target {name} while following its job {}: {}",
                        info.id, e.message
                    ));
                }
            }
        }
    }
}

/// Start an operation on a target (`POST path` answering with its job) and follow it.
pub async fn run_step(
    st: &AppState,
    job: i64,
    tc: &TargetConn,
    path: &str,
    body: &serde_json::Value,
    base: i64,
) -> Result<JobResult, String> {
    let tj: JobInfo = tc
        .call_as("POST", path, Some(body))
        .await
        .map_err(|e: ApiError| e.message)?;
    follow(st, job, tc, tj, base).await
}

/// End a site job: `done` and its detail, or `failed` and why (and the event either way).
pub async fn finish(st: &AppState, job: i64, total: i64, r: Result<String, String>) {
    let (state, done, detail) = match r {
        Ok(d) => ("done", total, d),
        Err(e) => ("failed", -1, e),
    };
    let done = if done < 0 {
        st.db.job(job).await.map(|j| j.done).unwrap_or(0)
    } else {
        done
    };
    if let Err(e) = st.db.job_step(job, done, state, &detail).await {
        tracing::warn!(job, error = %e, "recording the end of a job");
    }
}
