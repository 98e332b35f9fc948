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

pub async fn assign(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Json(req): Json<AssignRequest>,
) -> Result<Json<Done>, ApiError> {
    let selector = match (&req.group, &req.label) {
        (Some(g), None) => format!("group:{g}"),
        (None, Some(l)) => format!("label:{l}"),
        _ => String::new(),
    };
    c.audited(
        &st,
        Role::Operator,
        "policy.assign",
        &name,
        &selector,
        async {
            names::check("policy name", &name)?;
            match (&req.group, &req.label) {
                (Some(g), None) => known(&st, g).await?,
                (None, Some(l)) => {
                    names::label(l)?;
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "assign to one of --group G and --label KEY=VALUE",
                    ))
                }
            }
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

pub async fn assignments(
    st: State<AppState>,
    c: Caller,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    c.may_read(Role::Viewer, "assignments")?;
    Ok(Json(st.db.assignments().await?))
}
