//! Status, audit log, events and jobs.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::AppState;
use crate::api::{AuditEntry, Event, Job, Status};
use crate::db::Backend;
use crate::error::ApiError;
use crate::roles::Role;

/// `?limit=N` (default 100, at most 10,000).
#[derive(Deserialize)]
pub struct Limit {
    limit: Option<i64>,
}

impl Limit {
    fn get(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=10_000).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(format!("limit {n}: give 1 to 10000"))),
        }
    }
}

pub async fn status(st: State<AppState>, c: Caller) -> Result<Json<Status>, ApiError> {
    Ok(Json(Status {
        instance: st.instance.clone(),
        leader: st.is_leader(),
        backend: match st.db.backend {
            Backend::Sqlite => "sqlite".into(),
            Backend::Postgres => "postgres".into(),
        },
        schema_versions: st.db.schema_versions().await?,
        caller: c.0.who,
        role: c.0.role,
    }))
}

pub async fn audit(
    st: State<AppState>,
    c: Caller,
    q: Query<Limit>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    c.may_read(Role::Operator, "the audit log")?;
    Ok(Json(st.db.audit_log(q.get()?).await?))
}

pub async fn events(
    st: State<AppState>,
    c: Caller,
    q: Query<Limit>,
) -> Result<Json<Vec<Event>>, ApiError> {
    c.may_read(Role::Viewer, "events")?;
    Ok(Json(st.db.events(q.get()?).await?))
}

pub async fn jobs(
    st: State<AppState>,
    c: Caller,
    q: Query<Limit>,
) -> Result<Json<Vec<Job>>, ApiError> {
    c.may_read(Role::Viewer, "jobs")?;
    Ok(Json(st.db.jobs(q.get()?).await?))
}
