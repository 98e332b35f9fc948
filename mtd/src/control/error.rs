//! The control API's error: each kind carries its HTTP status, and the body is
//! [`ErrorReply`] (`{"error": "..."}`), whose text says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::error::ErrorReply;
use crate::failover::FailoverError;
use crate::jobs::Busy;
use crate::refused::Refused;
use crate::server::drain::DrainError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed or names something invalid.
    BadRequest(String),
    /// 403: the caller may not do this.
    Forbidden(String),
    /// 404: no such group, disk, point, overlay, job or plan run.
    NotFound(String),
    /// 409: the state does not allow it now (in use, busy, already done).
    Conflict(String),
    /// 410: the point is older than the retention horizon.
    Gone(String),
    /// 500: the daemon failed.
    Internal(String),
    /// 507: the data dir's file system is full, or the daemon is out of file descriptors;
    /// the same request succeeds once they are freed.
    InsufficientStorage(String),
    /// 502: the agent's session ended before it answered.
    BadGateway(String),
    /// 504: the agent did not answer in time.
    GatewayTimeout(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Gone(m)
            | ApiError::Internal(m)
            | ApiError::InsufficientStorage(m)
            | ApiError::BadGateway(m)
            | ApiError::GatewayTimeout(m) => m,
        }
    }

    /// A store error's kind, told with `msg` (the error with any context around it).
    fn store(e: &StoreError, msg: String) -> ApiError {
        match e {
            StoreError::UnknownGroup(_)
            | StoreError::UnknownDisk { .. }
            | StoreError::PointNotFound { .. }
            | StoreError::UnknownOverlay(_) => ApiError::NotFound(msg),
            StoreError::OverlayInUse { .. } | StoreError::NotRecoverable { .. } => {
                ApiError::Conflict(msg)
            }
            StoreError::BadPoint { .. } | StoreError::Invalid { .. } => ApiError::BadRequest(msg),
            StoreError::PointTooOld { .. } => ApiError::Gone(msg),
            StoreError::ReadOnly(_) => ApiError::Forbidden(msg),
            e if crate::store::shortage::Shortage::of(e).is_some() => {
                // The errno is the point here (a bare "create directory X" says nothing).
                let why = std::error::Error::source(e).map_or_else(String::new, |s| s.to_string());
                let msg = if msg.contains(&why) {
                    msg
                } else {
                    format!("{msg}: {why}")
                };
                ApiError::InsufficientStorage(format!(
                    "{msg} (free space or file descriptors on the target, then retry)"
                ))
            }
            _ => ApiError::Internal(msg),
        }
    }

    /// An error of the loop-device and mount code (`views/attach.rs`), which returns
    /// `anyhow`: the store error or refusal inside it keeps its status; anything else is the
    /// request's fault (a mount point that is not a directory, no filesystem to mount...).
    // Until attach.rs returns a typed error, this is the one place that looks inside anyhow.
    pub fn from_attach(e: anyhow::Error) -> ApiError {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return ApiError::from_refused(r);
        }
        match e.downcast_ref::<StoreError>() {
            Some(se) => ApiError::store(se, format!("{e:#}")),
            None => ApiError::BadRequest(format!("{e:#}")),
        }
    }

    fn from_refused(r: &Refused) -> ApiError {
        let msg = r.to_string();
        match r {
            Refused::Conflict(_) => ApiError::Conflict(msg),
            Refused::NotFound(_) => ApiError::NotFound(msg),
            Refused::Invalid(_) => ApiError::BadRequest(msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorReply {
            error: self.message().to_string(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError::from_refused(&r)
    }
}

impl From<Busy> for ApiError {
    fn from(b: Busy) -> Self {
        ApiError::Conflict(b.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        ApiError::store(&e, msg)
    }
}

impl From<FailoverError> for ApiError {
    fn from(e: FailoverError) -> Self {
        match e {
            FailoverError::Refused(r) => r.into(),
            FailoverError::Busy(b) => b.into(),
            FailoverError::Store(s) => s.into(),
            FailoverError::Failed(e) => ApiError::BadRequest(format!("{e:#}")),
        }
    }
}

impl From<DrainError> for ApiError {
    fn from(e: DrainError) -> Self {
        let msg = e.to_string();
        match e {
            DrainError::UnknownGroup(_) => ApiError::NotFound(msg),
            DrainError::BadTag { .. } => ApiError::BadRequest(msg),
            DrainError::NotConnected(_)
            | DrainError::NotConnectedForTag(_)
            | DrainError::Refused { .. } => ApiError::Conflict(msg),
            DrainError::SessionEnded { .. } => ApiError::BadGateway(msg),
            DrainError::Timeout { .. } => ApiError::GatewayTimeout(msg),
        }
    }
}
