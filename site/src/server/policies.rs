//! Policies: create, update (a new version), show, list, assign to a group or a label.

use axum::extract::{Path, State};
use axum::Json;
use rewind_formats::policy::Policy;

use super::auth::Caller;
use super::groups::known;
use super::AppState;
use crate::api::{AssignRequest, Assignment, Done, PolicySpec};
use crate::error::ApiError;
use crate::roles::Role;
use crate::{names, policy_spec};

fn detail(spec: &PolicySpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

pub async fn list(st: State<AppState>, c: Caller) -> Result<Json<Vec<Policy>>, ApiError> {
    c.may_read(Role::Viewer, "policies")?;
    Ok(Json(st.db.policies().await?))
}

pub async fn show(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Policy>, ApiError> {
    c.may_read(Role::Viewer, "policies")?;
    names::check("policy name", &name)?;
    Ok(Json(st.db.policy(&name).await?))
}

pub async fn create(
    st: State<AppState>,
    c: Caller,
    Json(spec): Json<PolicySpec>,
) -> Result<Json<Policy>, ApiError> {
    c.audited(
        &st,
        Role::Operator,
        "policy.create",
        &spec.name,
        &detail(&spec),
        async {
            let p = policy_spec::create(&spec)?;
            st.db.create_policy(&p).await?;
            st.db
                .event("policy.created", &p.name, &format!("version {}", p.version))
                .await?;
            Ok(Json(p))
        },
    )
    .await
}

pub async fn update(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Json(mut spec): Json<PolicySpec>,
) -> Result<Json<Policy>, ApiError> {
    spec.name = name.clone();
    c.audited(
        &st,
        Role::Operator,
        "policy.update",
        &name,
        &detail(&spec),
        async {
            names::check("policy name", &name)?;
            let current = st.db.policy(&name).await?;
            let p = policy_spec::update(&current, &spec)?;
            st.db.update_policy(&p).await?;
            st.db
                .event("policy.updated", &p.name, &format!("version {}", p.version))
                .await?;
            Ok(Json(p))
        },
    )
    .await
}

/// `group:G` or `label:K=V`, for the audit record (validated by [`check_selector`]).
fn selector_of(req: &AssignRequest) -> String {
    match (&req.group, &req.label) {
        (Some(g), None) => format!("group:{g}"),
        (None, Some(l)) => format!("label:{l}"),
        _ => String::new(),
    }
}

/// One of a known group and a well-formed label.
async fn check_selector(st: &AppState, req: &AssignRequest) -> Result<(), ApiError> {
    match (&req.group, &req.label) {
        (Some(g), None) => known(st, g).await,
        (None, Some(l)) => names::label(l).map(|_| ()),
        _ => Err(ApiError::bad_request(
            "one of --group G and --label KEY=VALUE",
        )),
    }
}

pub async fn assign(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Json(req): Json<AssignRequest>,
) -> Result<Json<Done>, ApiError> {
    let selector = selector_of(&req);
    c.audited(
        &st,
        Role::Operator,
        "policy.assign",
        &name,
        &selector,
        async {
            names::check("policy name", &name)?;
            check_selector(&st, &req).await?;
            // 404 for an unknown policy before anything is written.
            st.db.policy(&name).await?;
            st.db.assign(&name, &selector).await?;
            Ok(Json(Done {
                done: format!("policy {name} assigned to {selector}"),
            }))
        },
    )
    .await
}

/// `DELETE /v1/assignments` (body: a group or a label): the group, or the groups with the
/// label, fall back to what else applies (a label's policy, or none: a target keeps running
/// the last policy it was given).
pub async fn unassign(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<AssignRequest>,
) -> Result<Json<Done>, ApiError> {
    let selector = selector_of(&req);
    c.audited(
        &st,
        Role::Operator,
        "policy.unassign",
        &selector,
        "",
        async {
            check_selector(&st, &req).await?;
            if st.db.unassign(&selector).await? == 0 {
                return Err(ApiError::not_found(format!(
                    "no policy is assigned to {selector}"
                )));
            }
            Ok(Json(Done {
                done: format!("{selector} has no policy of its own now"),
            }))
        },
    )
    .await
}

pub async fn assignments(
    st: State<AppState>,
    c: Caller,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    c.may_read(Role::Viewer, "assignments")?;
    Ok(Json(st.db.assignments().await?))
}
