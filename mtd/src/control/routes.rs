//! The control API's routes, and what every handler shares: anything that touches disks or runs
//! commands goes through [`blocking`], never blocking a tokio worker.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::error::ApiError;
use super::Control;

pub type Ctl = State<Arc<Control>>;

pub type ApiResult<T> = Result<Json<T>, ApiError>;

pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/v1/groups", get(super::groups::groups))
        .route("/v1/groups/{group}", delete(super::groups::delete_group))
        .route("/v1/groups/{group}/points", get(super::points::points))
        .route(
            "/v1/groups/{group}/retention",
            post(super::groups::retention),
        )
        .route("/v1/groups/{group}/drain", post(super::drain::drain_group))
        .route("/v1/groups/{group}/fence", post(super::drain::fence_group))
        .merge(super::overlays::router())
        .merge(super::attachments::router())
        .merge(super::failover::router())
        .merge(super::plans::router())
        .with_state(control)
}
