//! Console logins: the site's local users sign in with their password and get a session cookie
//! (`HttpOnly; Secure; SameSite=Strict`, a random id whose SHA-256 alone is stored). The same
//! cookie opens the `/v1` API to the console's script, but a request that changes anything must
//! also carry the session's CSRF token in `X-CSRF-Token` (forms: a `csrf` field), which a page
//! of another origin can neither read nor send.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::db::now_ms;
use crate::error::ApiError;
use crate::roles::{Principal, Role};
use crate::secrets;
use crate::server::AppState;

/// The cookie's name.
pub const COOKIE: &str = "rewind_session";
/// How long a login lasts.
pub const LIFETIME_MS: i64 = 12 * 3600 * 1000;

/// A signed-in console user.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

impl Session {
    pub fn principal(&self) -> Principal {
        Principal {
            who: format!("user {}", self.user),
            role: self.role,
        }
    }

    /// May this user act (operator or higher)?
    pub fn may_act(&self) -> bool {
        self.role >= Role::Operator
    }
}

fn cookie_value(parts: &Parts) -> Option<String> {
    for h in parts.headers.get_all(header::COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        for kv in h.split(';') {
            if let Some((k, v)) = kv.trim().split_once('=') {
                if k == COOKIE && !v.is_empty() && v.len() <= 128 {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// The session the request's cookie names, if it is live and its user still exists.
pub async fn lookup(parts: &Parts, st: &AppState) -> Result<Option<Session>, ApiError> {
    let Some(id) = cookie_value(parts) else {
        return Ok(None);
    };
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT user_name, csrf, expires_ms FROM console_sessions WHERE id_hash = $1",
    )
    .bind(secrets::token_hash(&id))
    .fetch_optional(&st.db.pool)
    .await?;
    let Some((user, csrf, expires)) = row else {
        return Ok(None);
    };
    if expires < now_ms() {
        return Ok(None);
    }
    // The role as it is now: a user removed or demoted loses it at once.
    let Some((role, _)) = st.db.user_login(&user).await? else {
        return Ok(None);
    };
    Ok(Some(Session { user, role, csrf }))
}

/// For the API's authentication: the cookie's principal, with the CSRF token checked on every
/// method but GET and HEAD. `None`: no session cookie (try nothing else).
pub async fn api_principal(parts: &Parts, st: &AppState) -> Option<Result<Principal, ApiError>> {
    cookie_value(parts)?;
    Some(match lookup(parts, st).await {
        Err(e) => Err(e),
        Ok(None) => Err(ApiError::unauthorized(
            "console session expired or unknown: sign in again",
        )),
        Ok(Some(s)) => {
            let safe = parts.method == Method::GET || parts.method == Method::HEAD;
            let token = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if safe || token == Some(s.csrf.as_str()) {
                Ok(s.principal())
            } else {
                Err(ApiError::forbidden(
                    "console request without its CSRF token (X-CSRF-Token): refused",
                ))
            }
        }
    })
}

/// What every console page takes: the signed-in user, or a redirect to the login page.
pub struct Viewer(pub Session);

/// Not signed in: to the login page.
pub struct ToLogin;

impl IntoResponse for ToLogin {
    fn into_response(self) -> Response {
        Redirect::to("/console/login").into_response()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Viewer, Response> {
        match lookup(parts, st).await {
            Ok(Some(s)) => Ok(Viewer(s)),
            Ok(None) => Err(ToLogin.into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A new session for `user`: (cookie id, csrf token).
pub async fn create(st: &AppState, user: &str) -> Result<(String, String), ApiError> {
    let id = secrets::new_token();
    let csrf = secrets::new_token();
    let now = now_ms();
    // Expired sessions go as new ones come: the table stays the size of the live ones.
    sqlx::query("DELETE FROM console_sessions WHERE expires_ms < $1")
        .bind(now)
        .execute(&st.db.pool)
        .await?;
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, user_name, csrf, created_ms, expires_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secrets::token_hash(&id))
    .bind(user)
    .bind(&csrf)
    .bind(now)
    .bind(now + LIFETIME_MS)
    .execute(&st.db.pool)
    .await?;
    Ok((id, csrf))
}

/// End the session the request carries.
pub async fn destroy(parts: &Parts, st: &AppState) -> Result<(), ApiError> {
    if let Some(id) = cookie_value(parts) {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(secrets::token_hash(&id))
            .execute(&st.db.pool)
            .await?;
    }
    Ok(())
}

/// The `Set-Cookie` value for a session id (empty id: clear the cookie).
pub fn set_cookie(id: &str) -> String {
    let age = if id.is_empty() { 0 } else { LIFETIME_MS / 1000 };
    format!("{COOKIE}={id}; Path=/; Max-Age={age}; HttpOnly; Secure; SameSite=Strict")
}

/// A 303 to `to` that sets the cookie.
pub fn redirect_with_cookie(to: &str, id: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, to.to_string()),
            (header::SET_COOKIE, set_cookie(id)),
        ],
    )
        .into_response()
}
