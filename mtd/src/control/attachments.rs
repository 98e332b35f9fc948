//! `GET|POST /v1/attachments`, `POST /v1/detach`, `POST /v1/mounts`, `POST /v1/umount`: loop
//! devices and mounts of exports (the work is in `views/attach.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::Control;
use crate::api::attachments::{
    AttachRequest, Attachment, DetachRequest, MountRequest, UmountRequest,
};
use crate::views::attach;
use crate::views::exports::ExportName;

pub fn router() -> Router<Arc<Control>> {
    Router::new()
        .route("/v1/attachments", get(list).post(attach_one))
        .route("/v1/detach", post(detach_one))
        .route("/v1/mounts", post(mount_one))
        .route("/v1/umount", post(umount_one))
}

async fn list(State(c): Ctl) -> ApiResult<Vec<Attachment>> {
    Ok(Json(c.attachments.list()))
}

/// An export name from a request body, its names checked before anything else is.
fn valid_export(export: &str) -> Result<(), ApiError> {
    let n = ExportName::parse(export)?;
    Ok(crate::names::check_export(&n)?)
}

fn views(c: &Control) -> Result<PathBuf, ApiError> {
    c.views.clone().ok_or_else(|| {
        ApiError::Conflict(
            "this rewind-mtd has no view tree: start it with --views DIR to attach or mount".into(),
        )
    })
}

async fn attach_one(State(c): Ctl, Json(req): Json<AttachRequest>) -> ApiResult<Attachment> {
    valid_export(&req.export)?;
    let a = blocking(move || {
        // A bad name or point spec is wrong whatever the daemon's setup: said first.
        ExportName::parse(&req.export)?;
        let v = views(&c)?;
        attach::attach(
            &c.exports,
            &v,
            &c.attachments,
            &req.export,
            req.writable,
            req.partitions,
            None,
        )
        .map_err(ApiError::from_attach)
    })
    .await?;
    Ok(Json(a))
}

async fn detach_one(State(c): Ctl, Json(req): Json<DetachRequest>) -> ApiResult<Attachment> {
    let a = blocking(move || {
        attach::detach(&c.exports, &c.attachments, &req.device).map_err(ApiError::from_attach)
    })
    .await?;
    Ok(Json(a))
}

async fn mount_one(State(c): Ctl, Json(req): Json<MountRequest>) -> ApiResult<Attachment> {
    valid_export(&req.export)?;
    let a = blocking(move || {
        // A bad name or point spec is wrong whatever the daemon's setup: said first.
        ExportName::parse(&req.export)?;
        let v = views(&c)?;
        attach::mount(
            &c.exports,
            &v,
            &c.attachments,
            &req.export,
            &req.dir,
            req.partition,
            req.options.as_deref(),
        )
        .map_err(ApiError::from_attach)
    })
    .await?;
    Ok(Json(a))
}

async fn umount_one(State(c): Ctl, Json(req): Json<UmountRequest>) -> ApiResult<Attachment> {
    let a = blocking(move || {
        attach::umount(&c.exports, &c.attachments, &req.dir).map_err(ApiError::from_attach)
    })
    .await?;
    Ok(Json(a))
}
