//! Recovery plans: the list, a run in test mode, each step live, and the RTO history. The plans
//! live in the site's plan routes (`/v1/plans`); the page is a frame the script fills from them
//! and keeps current as job events arrive.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::layout;
use super::session::Viewer;
use crate::server::AppState;

pub async fn page(State(_st): State<AppState>, Viewer(s): Viewer) -> Response {
    let body = html! {
        section #plans data-plans data-act=(if s.may_act() { "1" } else { "" }) {
            p.quiet { "Loading plans…" }
        }
        section #plan-runs { h2 { "Runs" } div #runs {} }
    };
    layout::ok(&s, "Recovery plans", body)
}
