//! Recovery plans kept by the site and run across targets (see [`crate::ops::plan`]):
//! `GET|POST /v1/plans`, `GET|DELETE /v1/plans/{name}`, `POST /v1/plans/{name}/run`,
//! `GET /v1/plans/{name}/runs`, `POST /v1/plans/{name}/cleanup`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::ops::{check_point, need_leader, JobRef};
use super::AppState;
use crate::api::Done;
use crate::db::now_ms;
use crate::db::plans::{PlanRunRecord, StoredPlan};
use crate::error::ApiError;
use crate::names;
use crate::ops::call::TargetConn;
use crate::ops::plan::{self, Started};
use crate::roles::Role;
use rewind_mtd::api::plans::{RunState, RunStatus};
use rewind_mtd::plan::Mode;

/// `POST /v1/plans`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanRequest {
    pub name: String,
    /// The plan's TOML (the `rewind plan` file format).
    pub text: String,
}

/// `POST /v1/plans/{name}/run`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanRunRequest {
    /// test, planned or unplanned.
    pub mode: String,
    #[serde(default)]
    pub point: Option<String>,
}

/// The longest plan text taken.
const MAX_PLAN_BYTES: usize = 256 * 1024;

pub async fn list(st: State<AppState>, c: Caller) -> Result<Json<Vec<StoredPlan>>, ApiError> {
    c.may_read(Role::Viewer, "plans")?;
    Ok(Json(st.db.plans().await?))
}

pub async fn show(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<StoredPlan>, ApiError> {
    c.may_read(Role::Viewer, "plans")?;
    names::check("plan name", &name)?;
    Ok(Json(st.db.plan(&name).await?))
}

pub async fn create(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<PlanRequest>,
) -> Result<Json<Done>, ApiError> {
    let who = c.0.who.clone();
    c.audited(&st, Role::Operator, "plan.create", &req.name, "", async {
        names::check("plan name", &req.name)?;
        if req.text.len() > MAX_PLAN_BYTES {
            return Err(ApiError::bad_request(format!(
                "plan {}: {} bytes of text, at most {MAX_PLAN_BYTES}",
                req.name,
                req.text.len()
            )));
        }
        // Syntax, names, and every machine's group known to the site (placement may change
        // until it runs: segments are cut again then).
        plan::segments(&st, &req.name, &req.text).await?;
        st.db.add_plan(&req.name, &req.text, &who).await?;
        Ok(Json(Done {
            done: format!("plan {} stored", req.name),
        }))
    })
    .await
}

pub async fn remove(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Operator, "plan.delete", &name, "", async {
        names::check("plan name", &name)?;
        st.db.remove_plan(&name).await?;
        Ok(Json(Done {
            done: format!("plan {name} deleted"),
        }))
    })
    .await
}

pub async fn runs(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<PlanRunRecord>>, ApiError> {
    c.may_read(Role::Viewer, "plan runs")?;
    names::check("plan name", &name)?;
    st.db.plan(&name).await?;
    Ok(Json(st.db.plan_runs(&name, 50).await?))
}

pub async fn run(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Json(req): Json<PlanRunRequest>,
) -> Result<(StatusCode, Json<JobRef>), ApiError> {
    let detail = format!(
        "mode={} point={}",
        req.mode,
        req.point.as_deref().unwrap_or("-")
    );
    c.audited(&st, Role::Operator, "plan.run", &name, &detail, async {
        need_leader(&st)?;
        names::check("plan name", &name)?;
        let mode: Mode = req.mode.parse().map_err(ApiError::bad_request)?;
        check_point(&req.point)?;
        let stored = st.db.plan(&name).await?;
        let segs = plan::segments(&st, &name, &stored.text).await?;
        // Every target up before anything starts: a run must not stop half-way for a target
        // that was known to be down.
        let mut conns = Vec::with_capacity(segs.len());
        for s in segs {
            let tc = TargetConn::open(&st, &s.target).await?;
            conns.push((s, tc));
        }
        let started_ms = now_ms();
        let total = conns.len() as i64 * 100;
        let targets = conns
            .iter()
            .map(|(s, _)| s.target.as_str())
            .collect::<Vec<_>>()
            .join(",");
        // Recorded before the first target starts, removed again if it refuses.
        let job = st
            .db
            .start_job("plan.run", &name, total, &st.instance)
            .await?;
        let run = st
            .db
            .start_plan_run(
                &name,
                mode.as_str(),
                req.point.as_deref().unwrap_or(""),
                job,
                &st.instance,
                &targets,
            )
            .await?;
        let (seg0, tc0) = &conns[0];
        let req0 = plan::run_request(&name, seg0, mode, req.point.clone());
        let first: RunStatus = match tc0
            .call_as(
                "POST",
                "/v1/plans/run",
                Some(&serde_json::to_value(&req0).unwrap_or_default()),
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                st.db.delete_plan_run(run).await?;
                st.db.delete_job(job).await?;
                return Err(e);
            }
        };
        tokio::spawn(plan::run(
            st.0.clone(),
            Started {
                run,
                job,
                name: name.clone(),
                mode,
                point: req.point.clone(),
                segments: conns,
                first,
                started_ms,
            },
        ));
        Ok((StatusCode::ACCEPTED, Json(JobRef { job })))
    })
    .await
}

/// Clean up the plan's last run on every target it ran on (the target's `POST
/// /v1/plans/cleanup`, when that target's current plan is this one).
pub async fn cleanup(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<JobRef>), ApiError> {
    c.audited(&st, Role::Operator, "plan.cleanup", &name, "", async {
        need_leader(&st)?;
        names::check("plan name", &name)?;
        st.db.plan(&name).await?;
        let last = st
            .db
            .plan_runs(&name, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::conflict(format!("plan {name} has not run")))?;
        if last.state == "running" {
            return Err(ApiError::conflict(format!(
                "plan {name} run {} is running (job {}): wait for it to end",
                last.id, last.job
            )));
        }
        let mut conns = Vec::new();
        for t in last.targets.split(',').filter(|t| !t.is_empty()) {
            conns.push(TargetConn::open(&st, t).await?);
        }
        let total = conns.len() as i64;
        let job = st
            .db
            .start_job("plan.cleanup", &name, total, &st.instance)
            .await?;
        let (st2, name) = (st.0.clone(), name.clone());
        tokio::spawn(async move {
            let mut out = Vec::new();
            let mut failed = Vec::new();
            for (i, tc) in conns.iter().enumerate() {
                let t = &tc.target.name;
                let r = async {
                    let cur: RunStatus = tc.call_as("GET", "/v1/plans/current", None).await?;
                    if cur.plan != name {
                        return Ok(format!("{t}: runs plan {} now, left alone", cur.plan));
                    }
                    if cur.state == RunState::Cleaned {
                        return Ok(format!("{t}: cleaned already"));
                    }
                    let after: RunStatus = tc
                        .call_as("POST", "/v1/plans/cleanup", Some(&serde_json::json!({})))
                        .await?;
                    Ok::<_, ApiError>(format!("{t}: {:?}", after.state))
                }
                .await;
                match r {
                    Ok(s) => out.push(s),
                    Err(e) => failed.push(e.message),
                }
                let _ = st2
                    .db
                    .job_step(job, i as i64 + 1, "running", &out.join("; "))
                    .await;
            }
            let r = if failed.is_empty() {
                let _ = st2
                    .db
                    .end_plan_run(last.id, "cleaned", last.rto_ms, &out.join("; "))
                    .await;
                Ok(format!(
                    "plan {name} run {} cleaned up: {}",
                    last.id,
                    out.join("; ")
                ))
            } else {
                Err(failed.join("; "))
            };
            crate::ops::mirror::finish(&st2, job, total, r).await;
        });
        Ok((StatusCode::ACCEPTED, Json(JobRef { job })))
    })
    .await
}
