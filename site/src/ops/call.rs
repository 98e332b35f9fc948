//! Calls to a master target's control API on behalf of a site operation. A target's refusal
//! keeps its status (a 409 "wrong state" stays a 409) with the target named, so the caller of the
//! site's route sees why; a target that cannot be reached is a 503.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::db::targets::Target;
use crate::error::ApiError;
use crate::https::Https;
use crate::server::AppState;

/// How long one control call may take (operations answer at once with a job).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A target and a client to it.
pub struct TargetConn {
    pub target: Target,
    pub h: Https,
}

impl TargetConn {
    /// The registered target `name`, which must be up.
    pub async fn open(st: &AppState, name: &str) -> Result<TargetConn, ApiError> {
        let target = st.db.target(name).await?;
        if target.state != "up" {
            return Err(ApiError::unavailable(format!(
                "target {name} is {} ({}): the operation needs it up",
                target.state, target.reason
            )));
        }
        let h = crate::targets::client(&st.state, &target.url, CALL_TIMEOUT)
            .map_err(|e| ApiError::internal(format!("client for target {name}: {e:#}")))?;
        Ok(TargetConn { target, h })
    }

    /// The target that owns `group` (404 for a group the site does not know).
    pub async fn of_group(st: &AppState, group: &str) -> Result<TargetConn, ApiError> {
        crate::server::groups::known(st, group).await?;
        let name = st.db.group_owner(group).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "group {group}: no target holds it (see `rewind-site groups`)"
            ))
        })?;
        TargetConn::open(st, &name).await
    }

    /// Send a request; the reply's JSON, or the target's error with its status.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let name = &self.target.name;
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let r = self
            .h
            .request(method, path, body)
            .await
            .map_err(|e| ApiError::unavailable(format!("target {name} unreachable: {e:#}")))?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if (200..300).contains(&r.status) {
            return Ok(v);
        }
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
        // A target's 5xx is the target's trouble, not the request's: 502 says so.
        let status = if r.status >= 500 { 502 } else { r.status };
        Err(ApiError {
            status,
            message: format!("target {name}: {msg}"),
        })
    }

    /// [`TargetConn::call`], the reply read as `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let v = self.call(method, path, body).await?;
        serde_json::from_value(v).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                format!(
                    "target {}: {method} {path}: unexpected reply: {e}",
                    self.target.name
                ),
            )
        })
    }
}
