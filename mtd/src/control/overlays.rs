//! `GET|POST /v1/overlays` and `DELETE /v1/overlays/{name}`: writable overlays over points.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get};
use axum::{Json, Router};

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::names::OverlayPath;
use super::Control;
use crate::api::overlays::{OverlayCreate, OverlayInfo};
use crate::api::Deleted;
use crate::views::exports::{ExportName, Target};

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/v1/overlays", get(list).post(create))
        .route("/v1/overlays/{name}", delete(remove))
}

async fn list(State(c): Ctl) -> ApiResult<Vec<OverlayInfo>> {
    Ok(Json(c.exports.overlays.list()))
}

async fn create(State(c): Ctl, Json(req): Json<OverlayCreate>) -> ApiResult<OverlayInfo> {
    let info = blocking(move || {
        let n = ExportName::parse(&req.export)?;
        crate::names::check_export(&n)?;
        let point =
            match n.target {
                Target::Latest => "latest".to_string(),
                Target::Point(p) => p,
                Target::Overlay(_) => return Err(ApiError::BadRequest(
                    "an overlay is made over a point (GROUP/DISK@POINT), not over another overlay"
                        .into(),
                )),
            };
        let o = c
            .exports
            .overlays
            .create(&req.name, &n.group, &n.disk, &point, false)?;
        // The table holds one handle; this one is ours, not a user's.
        let mut info = o.info();
        info.users -= 1;
        Ok(info)
    })
    .await?;
    Ok(Json(info))
}

async fn remove(State(c): Ctl, OverlayPath(name): OverlayPath) -> ApiResult<Deleted> {
    blocking(move || {
        if c.attachments
            .list()
            .iter()
            .any(|a| a.export.ends_with(&format!("@overlay:{name}")))
        {
            return Err(ApiError::Conflict(format!(
                "overlay {name} is attached to a loop device; `rewind detach` it first"
            )));
        }
        c.exports.overlays.delete(&name)?;
        Ok(Deleted { deleted: name })
    })
    .await
    .map(Json)
}
