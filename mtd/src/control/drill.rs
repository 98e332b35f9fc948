//! Control routes of drills (`crate::drill`): start one (a job), show a group's drills, set
//! its drill configuration. A refused drill (a test failover is up, another job runs) is a 409
//! with the reason, and changes nothing.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::handler::{blocking, ApiResult, Ctl};
use super::names::GroupName;
use super::Control;
use crate::api::drill::{DrillConfigRequest, DrillRequest, DrillShow};
use crate::api::jobs::JobInfo;

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/v1/groups/{group}/drill", get(show).post(run))
        .route("/v1/groups/{group}/drill/config", post(configure))
}

/// The group's drill state (blocking: it reads the store).
pub fn show_of(c: &Control, group: &str) -> DrillShow {
    let every_secs = c
        .exports
        .store
        .group(group)
        .ok()
        .and_then(|g| g.policy())
        .map_or(0, |p| p.drill_every_secs);
    let st = c.failovers.get(group);
    DrillShow {
        group: group.to_string(),
        config: st.drill,
        boot: st.boot.is_some(),
        every_secs,
        drills: c.drills.status(group),
    }
}

async fn show(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<DrillShow> {
    blocking(move || {
        c.exports.store.group(&group)?;
        Ok(show_of(&c, &group))
    })
    .await
    .map(Json)
}

async fn run(
    State(c): Ctl,
    GroupName(group): GroupName,
    body: Option<Json<DrillRequest>>,
) -> ApiResult<JobInfo> {
    let point = body.and_then(|b| b.0.point);
    blocking(move || Ok(c.drills.start(&group, point, false)?))
        .await
        .map(Json)
}

async fn configure(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<DrillConfigRequest>,
) -> ApiResult<DrillShow> {
    blocking(move || {
        c.drills.configure(&group, req.config)?;
        Ok(show_of(&c, &group))
    })
    .await
    .map(Json)
}
