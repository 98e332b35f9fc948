//! Site-wide group operations (docs/SITE_OPS.md): failover test,
//! cleanup, planned, unplanned, commit, change-point and tag run as site jobs that drive the
//! owning target's control API; the failover state and points are read through from it.
//!
//! The target's first call is made before the answer, so a refusal (unknown group, wrong state,
//! bad point, target down) is an immediate 4xx/503 and changes nothing; what follows runs as a
//! site job on the leader (`202 {"job": ID}`), mirrored from the target's own job.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::auth::Caller;
use super::AppState;
use crate::api::Job;
use crate::error::ApiError;
use crate::names;
use crate::ops::call::TargetConn;
use crate::ops::{mirror, reverse};
use crate::roles::Role;
use rewind_mtd::api::jobs::JobInfo;

/// The answer of every operation: the site job that runs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRef {
    pub job: i64,
}

/// `{"point": ...}` (absent or null: the target's default, where it has one).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PointBody {
    #[serde(default)]
    pub point: Option<String>,
}

/// `POST .../failover/planned`: `links_dir` is where the reverse agent's protected devices
/// appear on the target when the site starts reverse replication (default /dev/rewind).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PlannedBody {
    #[serde(default)]
    pub links_dir: Option<String>,
}

/// `POST .../tag`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TagBody {
    pub name: String,
}

type Started = Result<(StatusCode, Json<JobRef>), ApiError>;

/// A point as the target takes it (`latest`, `seq:N`, `tag:NAME`, a time): text of a sane
/// length without control characters; the target judges the rest.
pub fn check_point(p: &Option<String>) -> Result<(), ApiError> {
    if let Some(p) = p {
        if p.is_empty() || p.len() > 128 || p.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "point {p:?}: give latest, latest-app-consistent, seq:N, tag:NAME or a time"
            )));
        }
    }
    Ok(())
}

/// Operations run on the leader: a standby refuses them (the caller retries on the leader).
pub fn need_leader(st: &AppState) -> Result<(), ApiError> {
    if !st.is_leader() {
        return Err(ApiError::unavailable(format!(
            "instance {} is a standby: operations run on the leading instance",
            st.instance
        )));
    }
    Ok(())
}

/// What runs after the target's first job succeeded.
#[derive(Clone, Debug)]
enum Then {
    Nothing,
    /// Planned failover: commit and reverse towards the group's origin target, if it has one.
    Reverse {
        links_dir: Option<String>,
    },
    /// Unplanned failover: tell the operator what to run.
    Advise,
}

/// Start `op` (`POST /v1/groups/{group}/{op}` on the owning target with `body`) and its site job.
#[allow(clippy::too_many_arguments)]
async fn start(
    st: &AppState,
    c: &Caller,
    group: &str,
    op: &str,
    body: Value,
    then: Then,
    steps: i64,
) -> Started {
    let detail = body.to_string();
    let action = format!("group.{}", op.replace('/', "."));
    c.audited(st, Role::Operator, &action, group, &detail, async {
        need_leader(st)?;
        let tc = TargetConn::of_group(st, group).await?;
        // The job is recorded before the target starts anything, so a target job never runs
        // without its site job; a refusal removes it again (nothing changed).
        let total = steps * 100;
        let job = st.db.start_job(&action, group, total, &st.instance).await?;
        let tj: JobInfo = match tc
            .call_as("POST", &format!("/v1/groups/{group}/{op}"), Some(&body))
            .await
        {
            Ok(tj) => tj,
            Err(e) => {
                st.db.delete_job(job).await?;
                return Err(e);
            }
        };
        let (st2, group) = (st.clone(), group.to_string());
        tokio::spawn(async move {
            let r = async {
                let res = mirror::follow(&st2, job, &tc, tj, 0).await?;
                match then {
                    Then::Nothing => Ok(format!(
                        "done on target {}: {}",
                        tc.target.name,
                        serde_json::to_string(&res).unwrap_or_default()
                    )),
                    Then::Reverse { links_dir } => {
                        reverse::after_planned(&st2, job, &tc, &group, links_dir).await
                    }
                    Then::Advise => reverse::advise_unplanned(&st2, &tc, &group).await,
                }
            }
            .await;
            mirror::finish(&st2, job, total, r).await;
        });
        Ok((StatusCode::ACCEPTED, Json(JobRef { job })))
    })
    .await
}

pub async fn test(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
    body: Option<Json<PointBody>>,
) -> Started {
    let p = body.map(|b| b.0).unwrap_or_default();
    check_point(&p.point)?;
    let body = json!({ "point": p.point });
    start(&st, &c, &group, "failover/test", body, Then::Nothing, 1).await
}

pub async fn cleanup(st: State<AppState>, c: Caller, Path(group): Path<String>) -> Started {
    start(
        &st,
        &c,
        &group,
        "failover/cleanup",
        json!({}),
        Then::Nothing,
        1,
    )
    .await
}

pub async fn commit(st: State<AppState>, c: Caller, Path(group): Path<String>) -> Started {
    start(
        &st,
        &c,
        &group,
        "failover/commit",
        json!({}),
        Then::Nothing,
        1,
    )
    .await
}

pub async fn planned(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
    body: Option<Json<PlannedBody>>,
) -> Started {
    let b = body.map(|b| b.0).unwrap_or_default();
    if let Some(d) = &b.links_dir {
        if !d.starts_with('/') || d.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "links_dir {d:?}: give an absolute path on the target"
            )));
        }
    }
    // Planned, then (with an origin) commit, adopt at the origin and reverse: four target jobs.
    let then = Then::Reverse {
        links_dir: b.links_dir,
    };
    start(&st, &c, &group, "failover/planned", json!({}), then, 4).await
}

pub async fn unplanned(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
    Json(p): Json<PointBody>,
) -> Started {
    check_point(&p.point)?;
    let body = json!({ "point": p.point });
    start(&st, &c, &group, "failover/unplanned", body, Then::Advise, 1).await
}

pub async fn change_point(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
    Json(p): Json<PointBody>,
) -> Started {
    check_point(&p.point)?;
    let body = json!({ "point": p.point });
    start(
        &st,
        &c,
        &group,
        "failover/change-point",
        body,
        Then::Nothing,
        1,
    )
    .await
}

/// `POST /v1/groups/{group}/tag`: the owning target's tag-now (`POST /v1/groups/{group}/tag`
/// `{"tag"}`, answered once the tag is durable), recorded as a site job. A target without that
/// route refuses with 404/405, passed on as is (nothing changes).
pub async fn tag(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
    Json(t): Json<TagBody>,
) -> Started {
    let st = st.0;
    c.audited(&st, Role::Operator, "group.tag", &group, &t.name, async {
        need_leader(&st)?;
        names::check("tag name", &t.name)?;
        let tc = TargetConn::of_group(&st, &group).await?;
        let v = tc
            .call(
                "POST",
                &format!("/v1/groups/{group}/tag"),
                Some(&json!({ "tag": t.name })),
            )
            .await
            .map_err(|e| {
                if e.status == 404 || e.status == 405 {
                    ApiError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        format!("{}: this target has no tag-now route", e.message),
                    )
                } else {
                    e
                }
            })?;
        let job = st
            .db
            .start_job("group.tag", &group, 1, &st.instance)
            .await?;
        let done = format!(
            "tag {} at seq {} on target {}",
            t.name, v["seq"], tc.target.name
        );
        mirror::finish(&st, job, 1, Ok(done)).await;
        Ok((StatusCode::ACCEPTED, Json(JobRef { job })))
    })
    .await
}

/// `GET /v1/groups/{group}/failover`: the owning target's failover state for the group.
pub async fn show(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.may_read(Role::Viewer, "failover state")?;
    from_target(&st, &group, "failover").await
}

/// `GET /v1/groups/{group}/points`: the owning target's points report.
pub async fn points(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.may_read(Role::Viewer, "points")?;
    from_target(&st, &group, "points").await
}

/// The owning target's `GET /v1/groups/{group}/{what}`, with the target's name added.
async fn from_target(st: &AppState, group: &str, what: &str) -> Result<Json<Value>, ApiError> {
    let tc = TargetConn::of_group(st, group).await?;
    let mut v = tc
        .call("GET", &format!("/v1/groups/{group}/{what}"), None)
        .await?;
    v["target"] = json!(tc.target.name);
    Ok(Json(v))
}

/// `GET /v1/jobs/{id}`.
pub async fn job(
    st: State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Job>, ApiError> {
    c.may_read(Role::Viewer, "jobs")?;
    Ok(Json(st.db.job(id).await?))
}
