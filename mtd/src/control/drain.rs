//! `POST /v1/groups/{group}/drain`: ask the group's agent to drain and tag (see
//! [`crate::server::drain`]); `POST /v1/groups/{group}/tag`: ask it for a tag now (writes go
//! on); and `POST /v1/groups/{group}/fence`: fence the group's source by
//! hand (bump the generation, end its session, refuse it from then on).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::handler::{blocking, ApiResult};
use super::names::GroupName;
use super::Control;
use crate::api::drain::{DrainReply, DrainRequest, FenceReply, FenceRequest, TagNowRequest};
use crate::server::drain;
use rewind_formats::{NameKind, MAX_MESSAGE_LEN};

/// How long a drain waits when the request does not say.
const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// The longest drain a request may ask for (a day): a deadline is `now + timeout`, which must not
/// overflow, and no drain needs more.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

pub async fn drain_group(
    State(c): State<Arc<Control>>,
    GroupName(group): GroupName,
    Json(req): Json<DrainRequest>,
) -> ApiResult<DrainReply> {
    let timeout = timeout(req.timeout_secs)?;
    crate::names::check(NameKind::Tag, &req.tag)?;
    let seq = drain::drain(&c.exports.store, &group, &req.tag, timeout).await?;
    Ok(Json(DrainReply { seq }))
}

pub async fn tag_group(
    State(c): State<Arc<Control>>,
    GroupName(group): GroupName,
    Json(req): Json<TagNowRequest>,
) -> ApiResult<DrainReply> {
    let timeout = timeout(req.timeout_secs)?;
    crate::names::check(NameKind::Tag, &req.tag)?;
    let seq = drain::tag_now(&c.exports.store, &group, &req.tag, timeout).await?;
    Ok(Json(DrainReply { seq }))
}

/// A request's `timeout_secs`, checked (the default when it gives none).
fn timeout(secs: Option<u64>) -> Result<Duration, ApiError> {
    let secs = secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(ApiError::BadRequest(format!(
            "timeout_secs {secs}: give 1 to {MAX_TIMEOUT_SECS} seconds"
        )));
    }
    Ok(Duration::from_secs(secs))
}

pub async fn fence_group(
    State(c): State<Arc<Control>>,
    GroupName(group): GroupName,
    Json(req): Json<FenceRequest>,
) -> ApiResult<FenceReply> {
    // The reason travels in an ERROR frame's text (at most MAX_MESSAGE_LEN bytes).
    if req.reason.len() > MAX_MESSAGE_LEN {
        return Err(ApiError::BadRequest(format!(
            "reason of {} bytes: at most {MAX_MESSAGE_LEN}",
            req.reason.len()
        )));
    }
    let generation = blocking(move || {
        let g = c.exports.store.group(&group)?;
        Ok(g.fence(&req.reason)?)
    })
    .await?;
    Ok(Json(FenceReply { generation }))
}
