//! Signing in and out. The form posts the site user's name and password (checked as the API's
//! basic authentication checks them, argon2 off the async workers); success sets the session
//! cookie and goes to the overview. Every attempt is audited.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout;
use super::session;
use crate::secrets;
use crate::server::AppState;

fn login_page(status: StatusCode, message: &str) -> Response {
    layout::respond(
        status,
        layout::page(
            None,
            "Sign in",
            html! {
                @if !message.is_empty() { p.error { (message) } }
                form.login method="post" action="/console/login" {
                    label { "User " input name="user" autocomplete="username" required autofocus; }
                    label { "Password " input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

pub async fn form() -> Response {
    login_page(StatusCode::OK, "")
}

fn field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn login(State(st): State<AppState>, body: Bytes) -> Response {
    let user = field(&body, "user").unwrap_or_default();
    let password = field(&body, "password").unwrap_or_default();
    let refused = || login_page(StatusCode::UNAUTHORIZED, "Wrong user name or password.");
    if crate::names::check("user name", &user).is_err() || password.is_empty() {
        return refused();
    }
    let found = match st.db.user_login(&user).await {
        Ok(f) => f,
        Err(e) => return layout::error(None, &e),
    };
    let ok = match found {
        Some((_, Some(hash))) => {
            tokio::task::spawn_blocking(move || secrets::verify_password(&password, &hash))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    let result = if ok {
        "ok"
    } else {
        "denied: wrong name or password"
    };
    let _ = st
        .db
        .audit(&format!("user {user}"), "console.login", &user, "", result)
        .await;
    if !ok {
        return refused();
    }
    match session::create(&st, &user).await {
        Ok((id, _)) => session::redirect_with_cookie("/console/", &id),
        Err(e) => layout::error(None, &e),
    }
}

/// Sign out: the form carries the CSRF token (a form cannot set a header).
pub async fn logout(State(st): State<AppState>, parts: Parts, body: Bytes) -> Response {
    let s = match session::lookup(&parts, &st).await {
        Ok(Some(s)) => s,
        _ => return session::redirect_with_cookie("/console/login", ""),
    };
    if field(&body, "csrf").as_deref() != Some(s.csrf.as_str()) {
        return layout::error(
            Some(&s),
            &crate::error::ApiError::forbidden("sign-out without its CSRF token: refused"),
        );
    }
    let _ = session::destroy(&parts, &st).await;
    session::redirect_with_cookie("/console/login", "")
}
