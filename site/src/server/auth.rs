//! Who is calling: a bearer token, a user's password (HTTP basic), or a client certificate from
//! the site CA whose common name is a user. Each request is authenticated on its own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;

use super::AppState;
use crate::error::ApiError;
use crate::roles::{Principal, Role};
use crate::secrets;

/// The verified client certificate of the connection, if any: (common name, OU).
#[derive(Clone, Debug, Default)]
pub struct PeerCert(pub Option<(String, Option<String>)>);

/// An authenticated caller (the extractor every handler takes).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Caller, ApiError> {
        match authenticate(parts, st).await {
            Ok(p) => Ok(Caller(p)),
            Err(e) => {
                if e.status == 401 {
                    let _ = st
                        .db
                        .audit(
                            "unauthenticated",
                            "login",
                            parts.uri.path(),
                            "",
                            &format!("denied: {}", e.message),
                        )
                        .await;
                }
                Err(e)
            }
        }
    }
}

async fn authenticate(parts: &Parts, st: &AppState) -> Result<Principal, ApiError> {
    if let Some(h) = parts.headers.get("authorization") {
        let h = h
            .to_str()
            .map_err(|_| ApiError::unauthorized("Authorization header is not text"))?;
        if let Some(token) = h.strip_prefix("Bearer ") {
            let token = token.trim();
            return match st.db.token_by_hash(&secrets::token_hash(token)).await? {
                Some((name, role)) => Ok(Principal {
                    who: format!("token {name}"),
                    role,
                }),
                None => Err(ApiError::unauthorized("unknown or removed API token")),
            };
        }
        if let Some(b64) = h.strip_prefix("Basic ") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::unauthorized("Basic credentials are not base64"))?;
            let raw = String::from_utf8(raw)
                .map_err(|_| ApiError::unauthorized("Basic credentials are not UTF-8"))?;
            let (user, password) = raw
                .split_once(':')
                .ok_or_else(|| ApiError::unauthorized("Basic credentials without ':'"))?;
            let refused =
                || ApiError::unauthorized(format!("user {user:?}: wrong name or password"));
            let Some((role, Some(hash))) = st.db.user_login(user).await? else {
                return Err(refused());
            };
            let password = password.to_string();
            // argon2 costs tens of milliseconds: not on a tokio worker.
            let ok =
                tokio::task::spawn_blocking(move || secrets::verify_password(&password, &hash))
                    .await
                    .map_err(|e| ApiError::internal(format!("password check: {e}")))?;
            if !ok {
                return Err(refused());
            }
            return Ok(Principal {
                who: format!("user {user}"),
                role,
            });
        }
        return Err(ApiError::unauthorized(
            "Authorization: give `Bearer TOKEN` or `Basic` user:password",
        ));
    }
    if let Some(PeerCert(Some((cn, ou)))) = parts.extensions.get::<PeerCert>() {
        // Agents' and targets' certificates come from the same CA: only users' open the API.
        if ou.as_deref() != Some(rewind_mtd::tls::ca::OU_CLIENT) {
            return Err(ApiError::unauthorized(format!(
                "certificate {cn} is not a user's (kind {})",
                ou.as_deref().unwrap_or("none")
            )));
        }
        return match st.db.user_login(cn).await? {
            Some((role, _)) => Ok(Principal {
                who: format!("cert {cn}"),
                role,
            }),
            None => Err(ApiError::unauthorized(format!(
                "certificate {cn}: no user of that name"
            ))),
        };
    }
    // The web console's session cookie (with its CSRF token on changes).
    if let Some(r) = crate::console::session::api_principal(parts, st).await {
        return r;
    }
    Err(ApiError::unauthorized(
        "authenticate: a client certificate from the site CA, a bearer token or a user's password",
    ))
}

impl Caller {
    /// Check the role, run `op`, and write the audit entry either way. A caller without the
    /// role gets 403 and `op` never runs (a future does nothing until polled).
    pub async fn audited<T>(
        &self,
        st: &AppState,
        need: Role,
        action: &str,
        subject: &str,
        detail: &str,
        op: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let p = &self.0;
        if p.role < need {
            let e = ApiError::forbidden(format!(
                "{} is {}: {action} needs the {need} role",
                p.who, p.role
            ));
            st.db
                .audit(
                    &p.who,
                    action,
                    subject,
                    detail,
                    &format!("denied: {}", e.message),
                )
                .await?;
            return Err(e);
        }
        let r = op.await;
        let result = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error: {}", e.message),
        };
        st.db
            .audit(&p.who, action, subject, detail, &result)
            .await?;
        if r.is_ok() {
            st.ring();
        }
        r
    }

    /// Check a read's role (reads are not audited).
    pub fn may_read(&self, need: Role, what: &str) -> Result<(), ApiError> {
        if self.0.role < need {
            return Err(ApiError::forbidden(format!(
                "{} is {}: reading {what} needs the {need} role",
                self.0.who, self.0.role
            )));
        }
        Ok(())
    }
}
