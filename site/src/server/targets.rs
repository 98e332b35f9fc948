//! Master targets: register (admin), list, remove.

use axum::extract::{Path, State};
use axum::Json;

use super::auth::Caller;
use super::AppState;
use crate::api::{Done, Target, TargetRequest};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::names;
use crate::roles::Role;

pub async fn list(st: State<AppState>, c: Caller) -> Result<Json<Vec<Target>>, ApiError> {
    c.may_read(Role::Viewer, "targets")?;
    Ok(Json(st.db.targets().await?))
}

pub async fn agents(
    st: State<AppState>,
    c: Caller,
) -> Result<Json<Vec<crate::db::targets::AgentView>>, ApiError> {
    c.may_read(Role::Viewer, "agents")?;
    Ok(Json(st.db.agents().await?))
}

pub async fn add(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<TargetRequest>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Admin, "target.add", &req.name, &req.url, async {
        names::check("target name", &req.name)?;
        let ep = Endpoint::parse(&req.url).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        let agents = match &req.agent_addr {
            Some(a) => check_agent_addr(a)?,
            None => String::new(),
        };
        st.db.add_target(&req.name, &ep.url(), &agents).await?;
        st.db.event("target.added", &req.name, &ep.url()).await?;
        Ok(Json(Done {
            done: format!("target {} registered at {}", req.name, ep.url()),
        }))
    })
    .await
}

pub async fn remove(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Admin, "target.remove", &name, "", async {
        names::check("target name", &name)?;
        st.db.remove_target(&name).await?;
        st.db.event("target.removed", &name, "").await?;
        Ok(Json(Done {
            done: format!("target {name} removed"),
        }))
    })
    .await
}

/// `HOST:PORT` of a target's agent listener.
fn check_agent_addr(a: &str) -> Result<String, ApiError> {
    let ep = Endpoint::parse(&format!("https://{a}"))
        .map_err(|_| ApiError::bad_request(format!("agent address {a:?}: give HOST:PORT")))?;
    Ok(ep.url().trim_start_matches("https://").to_string())
}
