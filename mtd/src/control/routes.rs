//! The control API's routes: which handler answers each path.

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

use super::Control;

pub fn router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/v1/groups", get(super::groups::groups))
        .route("/v1/events", get(super::events::events))
        .route("/v1/groups/{group}", delete(super::groups::delete_group))
        .route("/v1/groups/{group}/points", get(super::points::points))
        .route("/v1/ltr/gc", post(super::ltr::gc))
        .route(
            "/v1/groups/{group}/policy",
            get(super::policy::get_policy).put(super::policy::put_policy),
        )
        .route(
            "/v1/groups/{group}/retention",
            post(super::groups::retention),
        )
        .route("/v1/groups/{group}/drain", post(super::drain::drain_group))
        .route("/v1/groups/{group}/tag", post(super::drain::tag_group))
        .route("/v1/groups/{group}/fence", post(super::drain::fence_group))
        .route(
            "/v1/groups/{group}/verify",
            post(super::verify::verify_group),
        )
        .merge(super::overlays::router())
        .merge(super::attachments::router())
        .merge(super::failover::router())
        .merge(super::plans::router())
        .merge(super::drill::router())
        .with_state(control)
}
