//! Names in control API routes: a route takes a [`GroupName`] or [`OverlayPath`] instead of a bare
//! `Path<String>`, so it cannot forget the check (`crate::names`), and a bad name is a 400 before
//! the handler runs.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use rewind_formats::name::NameKind;

use super::error::ApiError;
use crate::names::check;

fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The `{group}` of a route, a valid group name (else 400 before the handler runs).
pub struct GroupName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for GroupName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(g) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(bad_request)?;
        check(NameKind::Group, &g).map_err(bad_request)?;
        Ok(GroupName(g))
    }
}

/// The `{name}` of an overlay route, a valid overlay name (else 400).
pub struct OverlayPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for OverlayPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(n) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(bad_request)?;
        crate::views::overlay::check_overlay_name(&n).map_err(bad_request)?;
        Ok(OverlayPath(n))
    }
}
