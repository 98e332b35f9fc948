//! The page shell every console page shares: navigation, who is signed in, the style sheet and
//! the script (both embedded in the binary and served from `/console/assets/`).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::Session;

pub const CSS: &str = include_str!("../../assets/console.css");
pub const JS: &str = include_str!("../../assets/console.js");

/// Only this origin's script, styles and connections; no framing (clickjacking).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NAV: [(&str, &str); 7] = [
    ("/console/", "Overview"),
    ("/console/targets", "Master targets"),
    ("/console/plans", "Recovery plans"),
    ("/console/alerts", "Alerts"),
    ("/console/jobs", "Jobs"),
    ("/console/audit", "Audit log"),
    ("/console/groups", "Groups"),
];

/// A full page: `title` is its `<h1>`.
pub fn page(s: Option<&Session>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Rewind" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body data-csrf=(s.map(|s| s.csrf.as_str()).unwrap_or("")) data-role=(s.map(|s| s.role.to_string()).unwrap_or_default()) {
                header.top {
                    span.brand { "Rewind" }
                    @if let Some(s) = s {
                        nav { @for (href, name) in NAV { a href=(href) { (name) } } }
                        form.logout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span.who { (s.user) " (" (s.role) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    p #result role="status" {}
                    (body)
                }
            }
        }
    }
}

/// A page as a response, with the security headers every page carries.
pub fn respond(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        m.into_string(),
    )
        .into_response()
}

/// 200 with the page.
pub fn ok(s: &Session, title: &str, body: Markup) -> Response {
    respond(StatusCode::OK, page(Some(s), title, body))
}

/// An error page (the API's status and message).
pub fn error(s: Option<&Session>, e: &crate::error::ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(
        status,
        page(
            s,
            &format!("Error {}", e.status),
            html! { p.error { (e.message) } },
        ),
    )
}

/// A time (ms since the epoch) as UTC text, or "—" for 0.
pub fn when(ms: i64) -> String {
    if ms <= 0 {
        return "—".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The static assets.
pub async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
