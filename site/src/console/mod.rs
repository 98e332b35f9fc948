//! The web console, served by `rewind-site` on its HTTPS listener under `/console/`: pages
//! rendered on the server (maud) from the site's database, a small script of our own
//! (`site/assets/console.js`) that runs the actions through the `/v1` API and follows
//! `/v1/events/follow` (server-sent events) to keep pages and job progress live. Nothing is
//! fetched from anywhere but the site.
//!
//! - [`session`]: login with the site's users, the session cookie and its CSRF token.
//! - [`facts`]: each group's figures; [`samples`]: the time series the charts draw
//!   ([`chart`]); [`forecast`]: the group's history window and journal forecast.
//! - [`overview`], [`group`], [`lists`] (targets, alerts, jobs, audit, groups), [`plans`]:
//!   the pages; [`layout`]: their shell; [`login`]: the sign-in page.

pub mod chart;
pub mod facts;
pub mod forecast;
pub mod group;
pub mod layout;
pub mod lists;
pub mod login;
pub mod overview;
pub mod plans;
pub mod samples;
pub mod session;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;

use crate::server::AppState;

/// The console's routes (merged into the API's router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(overview::page))
        .route("/console/login", get(login::form).post(login::login))
        .route("/console/logout", post(login::logout))
        .route("/console/assets/{name}", get(layout::asset))
        .route("/console/groups", get(lists::groups))
        .route("/console/groups/{group}", get(group::page))
        .route("/console/targets", get(lists::targets))
        .route("/console/alerts", get(lists::alerts))
        .route("/console/jobs", get(lists::jobs))
        .route("/console/audit", get(lists::audit))
        .route("/console/plans", get(plans::page))
}
