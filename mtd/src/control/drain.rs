//! `POST /v1/groups/{group}/drain`: ask the group's agent to drain and tag (see
//! [`crate::server::drain`]); and `POST /v1/groups/{group}/fence`: fence the group's source by
//! hand (bump the generation, end its session, refuse it from then on).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::routes::{blocking, ApiError, ApiResult};
use super::Control;
use crate::server::drain::{self, DrainError};

/// How long a drain waits when the request does not say.
const DEFAULT_TIMEOUT_SECS: u64 = 60;

#[derive(Serialize, Deserialize)]
pub struct DrainRequest {
    /// The name of the Failover tag the agent puts at its last seq.
    pub tag: String,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

#[derive(Serialize, Deserialize)]
pub struct DrainReply {
    /// The seq of the tag: the replica there equals the source.
    pub seq: u64,
}

pub async fn drain_group(
    State(c): State<Arc<Control>>,
    UrlPath(group): UrlPath<String>,
    Json(req): Json<DrainRequest>,
) -> ApiResult<DrainReply> {
    let timeout = Duration::from_secs(req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS));
    let seq = drain::drain(&c.exports.store, &group, &req.tag, timeout)
        .await
        .map_err(|e| {
            let code = match &e {
                DrainError::UnknownGroup(_) => StatusCode::NOT_FOUND,
                DrainError::BadTag { .. } => StatusCode::BAD_REQUEST,
                DrainError::NotConnected(_) | DrainError::Refused { .. } => StatusCode::CONFLICT,
                DrainError::SessionEnded { .. } => StatusCode::BAD_GATEWAY,
                DrainError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            };
            ApiError(code, e.to_string())
        })?;
    Ok(Json(DrainReply { seq }))
}

#[derive(Serialize, Deserialize)]
pub struct FenceRequest {
    /// Told to the fenced agent, and to any agent of the old generation that says HELLO.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
pub struct FenceReply {
    pub generation: u64,
}

pub async fn fence_group(
    State(c): State<Arc<Control>>,
    UrlPath(group): UrlPath<String>,
    Json(req): Json<FenceRequest>,
) -> ApiResult<FenceReply> {
    let generation = blocking(move || {
        let g = c.exports.store.group(&group)?;
        Ok(g.fence(&req.reason)?)
    })
    .await?;
    Ok(Json(FenceReply { generation }))
}
