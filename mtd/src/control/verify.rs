//! `POST /v1/groups/{group}/verify` `{"point", "repair", "deadline_secs"}` (every field
//! optional): starts an online verify of the group as a job (see [`crate::verify`]); answers
//! its [`JobInfo`] at once, and `GET /v1/jobs/{id}` follows it.

use axum::Json;

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::names::GroupName;
use crate::api::jobs::JobInfo;
use crate::api::verify::VerifyRequest;
use crate::verify::StartError;

pub async fn verify_group(
    axum::extract::State(c): Ctl,
    GroupName(group): GroupName,
    body: Option<Json<VerifyRequest>>,
) -> ApiResult<JobInfo> {
    let req = body.map(|b| b.0).unwrap_or_default();
    blocking(move || {
        crate::verify::start(&c.exports.store, &c.failovers.jobs, &group, req).map_err(
            |e| match e {
                StartError::Refused(r) => r.into(),
                StartError::Busy(b) => ApiError::from(b),
            },
        )
    })
    .await
    .map(Json)
}
