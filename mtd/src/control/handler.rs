//! What every control API handler shares: its state, its result type, and [`blocking`], through
//! which anything that touches disks or runs commands goes, never blocking a tokio worker.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

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
