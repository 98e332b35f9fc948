//! Jobs a client runs itself and reports step by step (`POST /v1/jobs`, `POST
//! /v1/jobs/{id}/progress`): `push-install` runs in the CLI on the site's machine, not in the
//! leading instance, yet the console and `rewind-site jobs` show it with its percent like the
//! site's own jobs. The owner is `client:WHO`, so only the caller that started a job reports it,
//! a change of leader leaves it alone, and the poll loop fails it when its client goes quiet.

use axum::extract::{Path, State};
use axum::Json;

use super::auth::Caller;
use super::AppState;
use crate::api::{
    ClientJobProgress, ClientJobStart, Job, CLIENT_JOB_KINDS, MAX_CLIENT_JOB_DETAIL,
    MAX_CLIENT_JOB_STEPS,
};
use crate::error::ApiError;
use crate::names;
use crate::roles::Role;

/// A client job with no step for this long is failed (push-install's longest step, the wait
/// for the agent's WELCOME, is 2 minutes by default).
pub const CLIENT_JOB_QUIET_MS: i64 = 15 * 60 * 1000;

fn owner(c: &Caller) -> String {
    format!("client:{}", c.0.who)
}

/// `POST /v1/jobs`.
pub async fn start(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<ClientJobStart>,
) -> Result<Json<Job>, ApiError> {
    if !CLIENT_JOB_KINDS.contains(&req.kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "job kind {:?}: a client may report only {}",
            req.kind,
            CLIENT_JOB_KINDS.join(", ")
        )));
    }
    names::check("job subject", &req.subject)?;
    if !(1..=MAX_CLIENT_JOB_STEPS).contains(&req.total) {
        return Err(ApiError::bad_request(format!(
            "job total {}: give 1 to {MAX_CLIENT_JOB_STEPS} steps",
            req.total
        )));
    }
    let detail = format!("kind={} total={}", req.kind, req.total);
    let who = owner(&c);
    c.audited(
        &st,
        Role::Operator,
        "job start",
        &req.subject,
        &detail,
        async {
            let id = st
                .db
                .start_job(&req.kind, &req.subject, req.total, &who)
                .await?;
            st.db.job(id).await
        },
    )
    .await
    .map(Json)
}

/// `POST /v1/jobs/{id}/progress`.
pub async fn progress(
    st: State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
    Json(req): Json<ClientJobProgress>,
) -> Result<Json<Job>, ApiError> {
    if c.0.role < Role::Operator {
        return Err(ApiError::forbidden(format!(
            "{} is {}: reporting a job's steps needs the operator role",
            c.0.who, c.0.role
        )));
    }
    if !["running", "done", "failed"].contains(&req.state.as_str()) {
        return Err(ApiError::bad_request(format!(
            "job state {:?}: give running, done or failed",
            req.state
        )));
    }
    if req.done < 0 {
        return Err(ApiError::bad_request(format!("job done {}", req.done)));
    }
    if req.detail.len() > MAX_CLIENT_JOB_DETAIL || req.detail.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "job detail: at most {MAX_CLIENT_JOB_DETAIL} bytes on one line"
        )));
    }
    let job = st
        .db
        .client_job_progress(id, &owner(&c), req.done, &req.state, &req.detail)
        .await?;
    st.db.publish_progress(job.clone()).await?;
    st.ring();
    Ok(Json(job))
}
