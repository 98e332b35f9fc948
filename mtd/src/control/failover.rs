//! Control routes of the failover operations. Each operation answers at once with a job (see
//! `crate::jobs`); `GET /v1/jobs/{id}` follows it. A refusal (wrong state, bad point, unknown
//! group) is an immediate 4xx and changes nothing.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::names::GroupName;
use super::routes::{blocking, ApiError, ApiResult, Ctl};
use super::Control;
use crate::failover::adopt::AdoptRequest;
use crate::failover::reverse::ReverseRequest;
use crate::jobs::JobInfo;

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/failover", get(list))
        .route("/v1/groups/{group}/failover", get(show))
        .route("/v1/groups/{group}/failover/configure", post(configure))
        .route("/v1/groups/{group}/failover/test", post(test))
        .route("/v1/groups/{group}/failover/cleanup", post(cleanup))
        .route("/v1/groups/{group}/failover/planned", post(planned))
        .route("/v1/groups/{group}/failover/unplanned", post(unplanned))
        .route(
            "/v1/groups/{group}/failover/change-point",
            post(change_point),
        )
        .route("/v1/groups/{group}/failover/commit", post(commit))
        .route(
            "/v1/groups/{group}/reverse",
            post(reverse).delete(reverse_stop),
        )
        .route("/v1/groups/{group}/adopt", post(adopt))
}

async fn jobs(State(c): Ctl) -> ApiResult<Vec<JobInfo>> {
    Ok(Json(c.failovers.jobs.list()))
}

async fn job(State(c): Ctl, UrlPath(id): UrlPath<u64>) -> ApiResult<JobInfo> {
    c.failovers
        .jobs
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))
}

async fn list(State(c): Ctl) -> ApiResult<Value> {
    Ok(Json(json!(c.failovers.list())))
}

async fn show(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<Value> {
    blocking(move || {
        c.exports.store.group(&group)?;
        Ok(json!({
            "state": c.failovers.get(&group),
            "reverse_status": c.failovers.reverse_status(&group),
        }))
    })
    .await
    .map(Json)
}

#[derive(Serialize, Deserialize, Default)]
pub struct PointRequest {
    #[serde(default)]
    pub point: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct ConfigureRequest {
    /// The boot command (placeholders `{nbd:DISK}`, `{loop:DISK}`, `{group}`); empty clears it.
    pub boot: Option<String>,
}

async fn configure(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<ConfigureRequest>,
) -> ApiResult<Value> {
    blocking(move || {
        let s = c.failovers.configure(&group, req.boot)?;
        Ok(json!(s))
    })
    .await
    .map(Json)
}

/// Run an operation that starts a job, off the async workers (its checks read the store).
async fn job_op(
    f: impl FnOnce() -> anyhow::Result<JobInfo> + Send + 'static,
) -> ApiResult<JobInfo> {
    blocking(move || Ok(f()?)).await.map(Json)
}

async fn test(
    State(c): Ctl,
    GroupName(group): GroupName,
    body: Option<Json<PointRequest>>,
) -> ApiResult<JobInfo> {
    let point = body.and_then(|b| b.0.point);
    job_op(move || c.failovers.test(&group, point, true)).await
}

async fn cleanup(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<JobInfo> {
    job_op(move || c.failovers.cleanup(&group)).await
}

async fn planned(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<JobInfo> {
    job_op(move || c.failovers.planned(&group, true)).await
}

fn need_point(p: Option<String>) -> Result<String, ApiError> {
    p.ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "give the point to fail over to: latest, latest-app-consistent, tag:NAME, a time (2026-11-26T10:00:00Z, -15m) or seq:N".into(),
        )
    })
}

async fn unplanned(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<PointRequest>,
) -> ApiResult<JobInfo> {
    let point = need_point(req.point)?;
    job_op(move || c.failovers.unplanned(&group, &point, true)).await
}

async fn change_point(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<PointRequest>,
) -> ApiResult<JobInfo> {
    let point = need_point(req.point)?;
    job_op(move || c.failovers.change_point(&group, &point)).await
}

async fn commit(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<JobInfo> {
    job_op(move || c.failovers.commit(&group)).await
}

async fn reverse(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<ReverseRequest>,
) -> ApiResult<JobInfo> {
    job_op(move || c.failovers.reverse(&group, req)).await
}

async fn reverse_stop(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<JobInfo> {
    job_op(move || c.failovers.reverse_stop(&group)).await
}

async fn adopt(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<AdoptRequest>,
) -> ApiResult<JobInfo> {
    job_op(move || c.failovers.adopt(&group, req)).await
}
