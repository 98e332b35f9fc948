//! `POST /v1/ltr/gc`: collect long-term garbage now (expired manifests, then chunks no manifest
//! names that are older than the grace period).

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use crate::api::ltr::GcRequest;
use crate::ltr::gc::GcStats;

pub async fn gc(State(c): Ctl, Json(req): Json<GcRequest>) -> ApiResult<GcStats> {
    let ltr = c.exports.store.ltr().ok_or_else(|| {
        ApiError::Conflict("long-term retention is off (--ltr-store none)".into())
    })?;
    let grace_ms = match &req.grace {
        Some(g) => humantime::parse_duration(g)
            .map_err(|e| ApiError::BadRequest(format!("grace {g:?}: {e}")))?
            .as_millis() as u64,
        None => ltr.opts.gc_grace.as_millis() as u64,
    };
    let r = blocking(move || {
        ltr.gc(rewind_linux::clock::now_ms(), grace_ms)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(Json(r))
}
