//! Alerts (list, acknowledge), notification channels (admin) and their deliveries.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::AppState;
use crate::api::{Alert, Channel, ChannelRequest, Delivery, Done};
use crate::error::ApiError;
use crate::roles::Role;

/// `?all=true` (every state, else firing only) and `?limit=N` (default 1000).
#[derive(Deserialize)]
pub struct AlertQuery {
    #[serde(default)]
    all: bool,
    limit: Option<i64>,
}

fn limit(l: Option<i64>) -> Result<i64, ApiError> {
    match l {
        None => Ok(1000),
        Some(n) if (1..=100_000).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit {n}: give 1 to 100000"
        ))),
    }
}

pub async fn list(
    st: State<AppState>,
    c: Caller,
    q: Query<AlertQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    c.may_read(Role::Viewer, "alerts")?;
    Ok(Json(st.db.alerts(q.all, limit(q.limit)?).await?))
}

pub async fn ack(
    st: State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Alert>, ApiError> {
    c.audited(&st, Role::Operator, "alert.ack", &id, "", async {
        let n: i64 = id
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::bad_request(format!("alert id {id:?}: give a number")))?;
        let a = st.db.ack(n, &c.0.who).await?;
        st.db
            .event("alert.acked", &a.subject, &format!("#{n} by {}", c.0.who))
            .await?;
        Ok(Json(a))
    })
    .await
}

pub async fn channels(st: State<AppState>, c: Caller) -> Result<Json<Vec<Channel>>, ApiError> {
    c.may_read(Role::Operator, "notification channels")?;
    Ok(Json(st.db.channels().await?))
}

pub async fn add_channel(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<ChannelRequest>,
) -> Result<Json<Done>, ApiError> {
    // Never the secret in the audit log: only whether there is one.
    let detail = format!(
        "kind={} url={} signed={}",
        req.kind,
        req.url,
        req.secret.as_ref().is_some_and(|s| !s.is_empty())
    );
    c.audited(&st, Role::Admin, "channel.add", &req.name, &detail, async {
        let checked = crate::notify::channel::check(&req)?;
        st.db.add_channel(&req.name, &checked).await?;
        Ok(Json(Done {
            done: format!(
                "{} channel {} added ({})",
                checked.kind, req.name, checked.url
            ),
        }))
    })
    .await
}

pub async fn remove_channel(
    st: State<AppState>,
    c: Caller,
    Path(name): Path<String>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Admin, "channel.remove", &name, "", async {
        crate::names::check("channel name", &name)?;
        st.db.remove_channel(&name).await?;
        Ok(Json(Done {
            done: format!("channel {name} removed"),
        }))
    })
    .await
}

pub async fn deliveries(
    st: State<AppState>,
    c: Caller,
    q: Query<AlertQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    c.may_read(Role::Operator, "deliveries")?;
    Ok(Json(st.db.deliveries(limit(q.limit)?).await?))
}
