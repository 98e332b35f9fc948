//! Control routes of recovery plans: run one (the daemon runs one plan at a time), follow its
//! status, continue past a manual step, clean up.
//!
//! - `POST /v1/plans/run` `{"path", "text", "mode", "point"}`: the CLI sends the file's text and
//!   its path (for `PATH:LINE:COL` errors); a bad plan is a 400 and changes nothing.
//! - `GET /v1/plans/current`, `POST /v1/plans/continue`, `POST /v1/plans/cleanup`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::Control;
use crate::api::plans::{RunRequest, RunState, RunStatus};
use crate::failover::plan_ops::FailoverPlanOps;
use crate::plan::{Mode, Plan, PlanRun};
use rewind_linux::clock::now_ms;

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/v1/plans/run", post(run))
        .route("/v1/plans/current", get(current))
        .route("/v1/plans/continue", post(continue_run))
        .route("/v1/plans/cleanup", post(cleanup))
}

fn conflict(msg: String) -> ApiError {
    ApiError::Conflict(msg)
}

fn current_run(c: &Control) -> Result<Arc<PlanRun>, ApiError> {
    c.plan
        .lock()
        .expect("plan lock")
        .clone()
        .ok_or_else(|| ApiError::NotFound("no recovery plan has run".into()))
}

async fn run(State(c): Ctl, Json(req): Json<RunRequest>) -> ApiResult<RunStatus> {
    blocking(move || {
        let mode: Mode = req.mode.parse().map_err(ApiError::BadRequest)?;
        let mut slot = c.plan.lock().expect("plan lock");
        if let Some(prev) = slot.as_ref() {
            let st = prev.status();
            let done = st.state == RunState::Cleaned
                || (st.state == RunState::Succeeded && st.mode != Mode::Test);
            if !done {
                return Err(conflict(format!(
                    "recovery plan {} ({} mode) is {:?}: `rewind plan cleanup` first",
                    st.plan, st.mode, st.state
                )));
            }
        }
        let plan =
            Plan::parse(&req.path, &req.text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let log_dir = c
            .exports
            .store
            .dir
            .join("plans")
            .join(format!("{}-{}", plan.name, now_ms()));
        let ops = Arc::new(FailoverPlanOps(c.failovers.clone()));
        let run = PlanRun::start(plan, ops, mode, req.point, &log_dir)
            .map_err(|e| ApiError::BadRequest(format!("{e:#}")))?;
        let st = run.status();
        *slot = Some(run);
        Ok(st)
    })
    .await
    .map(Json)
}

async fn current(State(c): Ctl) -> ApiResult<RunStatus> {
    let run = current_run(&c)?;
    Ok(Json(run.status()))
}

async fn continue_run(State(c): Ctl) -> ApiResult<RunStatus> {
    let run = current_run(&c)?;
    run.continue_run().map_err(|e| conflict(format!("{e:#}")))?;
    Ok(Json(run.status()))
}

async fn cleanup(State(c): Ctl) -> ApiResult<RunStatus> {
    let run = current_run(&c)?;
    blocking(move || {
        let st = run.status();
        if st.mode != Mode::Test && st.state == RunState::Succeeded {
            return Err(conflict(format!(
                "recovery plan {} ran in {} mode and succeeded: its machines are production now; stop them yourself",
                st.plan, st.mode
            )));
        }
        run.cleanup()
            .map_err(|e| ApiError::Internal(format!("{e:#}")))?;
        Ok(run.status())
    })
    .await
    .map(Json)
}
