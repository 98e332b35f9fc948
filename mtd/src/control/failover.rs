//! Control routes of the failover operations. Each operation answers at once with a job (see
//! `crate::jobs`); `GET /v1/jobs/{id}` follows it. A refusal (wrong state, bad point, unknown
//! group) is an immediate 4xx and changes nothing.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::names::GroupName;
use super::Control;
use crate::api::failover::{
    AdoptRequest, ConfigureRequest, FailoverShow, GroupFailover, PointRequest, ReverseRequest,
};
use crate::api::jobs::JobInfo;
use crate::failover::FailoverError;

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
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

async fn list(State(c): Ctl) -> ApiResult<Vec<GroupFailover>> {
    Ok(Json(c.failovers.list()))
}

async fn show(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<FailoverShow> {
    blocking(move || {
        c.exports.store.group(&group)?;
        Ok(FailoverShow {
            state: c.failovers.get(&group),
            reverse_status: c.failovers.reverse_status(&group),
        })
    })
    .await
    .map(Json)
}

async fn configure(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<ConfigureRequest>,
) -> ApiResult<GroupFailover> {
    blocking(move || Ok(c.failovers.configure(&group, req.boot)?))
        .await
        .map(Json)
}

/// Run an operation that starts a job, off the async workers (its checks read the store).
async fn job_op(
    f: impl FnOnce() -> Result<JobInfo, FailoverError> + Send + 'static,
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
        ApiError::BadRequest(
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
