//! Handlers of the control API. Anything that touches disks or runs commands goes through
//! `spawn_blocking`: never block a tokio worker.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::names::{GroupName, OverlayPath};
use super::Control;
use crate::jobs::Busy;
use crate::refused::Refused;
use crate::store::StoreError;
use crate::views::attach;
use crate::views::exports::{ExportName, Target};
use crate::views::inspect::{self, PointReport, TagReport};

pub type Ctl = State<Arc<Control>>;

/// An error with the status it maps to; the body says what to do.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        // A failover operation refused before it changed anything, or a group busy with a job.
        if let Some(r) = e.downcast_ref::<Refused>() {
            let code = match r {
                Refused::Conflict(_) => StatusCode::CONFLICT,
                Refused::NotFound(_) => StatusCode::NOT_FOUND,
                Refused::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            return ApiError(code, r.to_string());
        }
        if e.downcast_ref::<Busy>().is_some() {
            return ApiError(StatusCode::CONFLICT, format!("{e:#}"));
        }
        match e.downcast_ref::<StoreError>() {
            Some(se) => store_status(se, format!("{e:#}")),
            None => ApiError(StatusCode::BAD_REQUEST, format!("{e:#}")),
        }
    }
}

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        ApiError::from(anyhow::Error::from(e))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        store_status(&e, msg)
    }
}

fn store_status(e: &StoreError, msg: String) -> ApiError {
    let code = match e {
        StoreError::UnknownGroup(_) | StoreError::UnknownDisk { .. } => StatusCode::NOT_FOUND,
        StoreError::PointNotFound { .. } | StoreError::UnknownOverlay(_) => StatusCode::NOT_FOUND,
        StoreError::OverlayInUse { .. } => StatusCode::CONFLICT,
        StoreError::BadPoint { .. } | StoreError::Invalid { .. } => StatusCode::BAD_REQUEST,
        StoreError::PointTooOld { .. } => StatusCode::GONE,
        StoreError::NotRecoverable { .. } => StatusCode::CONFLICT,
        StoreError::ReadOnly(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(code, msg)
}

pub type ApiResult<T> = Result<Json<T>, ApiError>;

pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{group}", delete(super::groups::delete_group))
        .route("/v1/groups/{group}/points", get(points))
        .route("/v1/groups/{group}/retention", post(retention))
        .route("/v1/groups/{group}/drain", post(super::drain::drain_group))
        .route("/v1/groups/{group}/fence", post(super::drain::fence_group))
        .route("/v1/overlays", get(overlays).post(overlay_create))
        .route("/v1/overlays/{name}", delete(overlay_delete))
        .route("/v1/attachments", get(attachments).post(attach_one))
        .route("/v1/detach", post(detach_one))
        .route("/v1/mounts", post(mount_one))
        .route("/v1/umount", post(umount_one))
        .merge(super::failover::router())
        .merge(super::plans::router())
        .with_state(control)
}

async fn groups(State(c): Ctl) -> ApiResult<inspect::Report> {
    Ok(Json(
        blocking(move || Ok(inspect::report(&c.exports.store))).await?,
    ))
}

/// The recovery points of one group: every seq from the oldest to the newest is a
/// crash-consistent point; tags name some of them.
#[derive(Serialize, Deserialize)]
pub struct PointsReport {
    pub group: String,
    pub horizon_seq: u64,
    pub durable_seq: u64,
    pub oldest: Option<PointReport>,
    pub newest: Option<PointReport>,
    pub latest_app_consistent: Option<TagReport>,
    /// Named points (resync markers are reported as `not_recoverable` instead).
    pub tags: Vec<TagReport>,
    /// Seq ranges inside a resync: not recoverable.
    pub not_recoverable: Vec<inspect::UnrecoverableReport>,
    /// No resync is running.
    pub consistent: bool,
}

async fn points(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<PointsReport> {
    let r = blocking(move || {
        let group = c.exports.store.group(&group)?;
        let g = inspect::group_report(&group);
        let latest_app_consistent = g
            .tags
            .iter()
            .rev()
            .find(|t| t.kind == rewind_formats::message::TagKind::AppConsistent)
            .map(|t| TagReport {
                name: t.name.clone(),
                seq: t.seq,
                kind: t.kind,
                time: t.time.clone(),
            });
        Ok(PointsReport {
            group: g.name,
            horizon_seq: g.horizon_seq,
            durable_seq: g.durable_seq,
            oldest: g.oldest_point,
            newest: g.newest_point,
            latest_app_consistent,
            tags: g
                .tags
                .into_iter()
                .filter(|t| {
                    !matches!(
                        t.kind,
                        rewind_formats::message::TagKind::SyncBegin
                            | rewind_formats::message::TagKind::SyncEnd
                    )
                })
                .collect(),
            not_recoverable: g.not_recoverable,
            consistent: g.consistent,
        })
    })
    .await?;
    Ok(Json(r))
}

#[derive(Serialize, Deserialize)]
pub struct RetentionRequest {
    /// A duration: `24h`, `30m`, `7days`.
    pub retention: String,
}

async fn retention(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<RetentionRequest>,
) -> ApiResult<Value> {
    let d = crate::limits::parse_retention(&req.retention)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    blocking(move || {
        let g = c.exports.store.group(&group)?;
        // Cannot truncate: parse_retention caps it far below u64::MAX ms.
        g.set_retention(d.as_millis() as u64)?;
        Ok(json!({ "group": group, "retention": humantime::format_duration(d).to_string() }))
    })
    .await
    .map(Json)
}

async fn overlays(State(c): Ctl) -> ApiResult<Vec<crate::views::overlay::OverlayInfo>> {
    Ok(Json(c.exports.overlays.list()))
}

#[derive(Serialize, Deserialize)]
pub struct OverlayCreate {
    pub name: String,
    /// `GROUP/DISK[@POINT]`: what the overlay is over.
    pub export: String,
}

async fn overlay_create(
    State(c): Ctl,
    Json(req): Json<OverlayCreate>,
) -> ApiResult<crate::views::overlay::OverlayInfo> {
    let info = blocking(move || {
        let n = ExportName::parse(&req.export)?;
        crate::names::check_export(&n)?;
        let point =
            match n.target {
                Target::Latest => "latest".to_string(),
                Target::Point(p) => p,
                Target::Overlay(_) => return Err(ApiError(
                    StatusCode::BAD_REQUEST,
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

async fn overlay_delete(State(c): Ctl, OverlayPath(name): OverlayPath) -> ApiResult<Value> {
    blocking(move || {
        if c.attachments
            .list()
            .iter()
            .any(|a| a.export.ends_with(&format!("@overlay:{name}")))
        {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("overlay {name} is attached to a loop device; `rewind detach` it first"),
            ));
        }
        c.exports.overlays.delete(&name)?;
        Ok(json!({ "deleted": name }))
    })
    .await
    .map(Json)
}

async fn attachments(State(c): Ctl) -> ApiResult<Vec<attach::Attachment>> {
    Ok(Json(c.attachments.list()))
}

/// An export name from a request body, its names checked before anything else is.
fn valid_export(export: &str) -> Result<(), ApiError> {
    let n = ExportName::parse(export)?;
    Ok(crate::names::check_export(&n)?)
}

fn views(c: &Control) -> Result<PathBuf, ApiError> {
    c.views.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "this rewind-mtd has no view tree: start it with --views DIR to attach or mount".into(),
        )
    })
}

#[derive(Serialize, Deserialize)]
pub struct AttachRequest {
    pub export: String,
    #[serde(default)]
    pub writable: bool,
    #[serde(default)]
    pub partitions: bool,
}

async fn attach_one(
    State(c): Ctl,
    Json(req): Json<AttachRequest>,
) -> ApiResult<attach::Attachment> {
    valid_export(&req.export)?;
    let a = blocking(move || {
        // A bad name or point spec is wrong whatever the daemon's setup: said first.
        ExportName::parse(&req.export)?;
        let v = views(&c)?;
        Ok(attach::attach(
            &c.exports,
            &v,
            &c.attachments,
            &req.export,
            req.writable,
            req.partitions,
            None,
        )?)
    })
    .await?;
    Ok(Json(a))
}

#[derive(Serialize, Deserialize)]
pub struct DetachRequest {
    pub device: String,
}

async fn detach_one(
    State(c): Ctl,
    Json(req): Json<DetachRequest>,
) -> ApiResult<attach::Attachment> {
    let a = blocking(move || Ok(attach::detach(&c.exports, &c.attachments, &req.device)?)).await?;
    Ok(Json(a))
}

#[derive(Serialize, Deserialize)]
pub struct MountRequest {
    pub export: String,
    pub dir: PathBuf,
    #[serde(default)]
    pub partition: Option<u32>,
    #[serde(default)]
    pub options: Option<String>,
}

async fn mount_one(State(c): Ctl, Json(req): Json<MountRequest>) -> ApiResult<attach::Attachment> {
    valid_export(&req.export)?;
    let a = blocking(move || {
        // A bad name or point spec is wrong whatever the daemon's setup: said first.
        ExportName::parse(&req.export)?;
        let v = views(&c)?;
        Ok(attach::mount(
            &c.exports,
            &v,
            &c.attachments,
            &req.export,
            &req.dir,
            req.partition,
            req.options.as_deref(),
        )?)
    })
    .await?;
    Ok(Json(a))
}

#[derive(Serialize, Deserialize)]
pub struct UmountRequest {
    pub dir: PathBuf,
}

async fn umount_one(
    State(c): Ctl,
    Json(req): Json<UmountRequest>,
) -> ApiResult<attach::Attachment> {
    let a = blocking(move || Ok(attach::umount(&c.exports, &c.attachments, &req.dir)?)).await?;
    Ok(Json(a))
}
