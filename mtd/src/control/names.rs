//! Names from outside (URL paths, request bodies, CLI arguments), validated once at the edge with
//! `rewind_formats::name` before they reach a path: a route takes a [`GroupName`] or
//! [`OverlayPath`] instead of a bare `Path<String>`, so it cannot forget the check.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use rewind_formats::name::{self, NameKind};

use super::error::ApiError;
use crate::exports::{ExportName, Target};
use crate::failover::Refused;

/// Check a name of kind `kind`; the error names the kind, the name and the limit.
pub fn check(kind: NameKind, s: &str) -> Result<(), Refused> {
    name::validate(kind, s).map_err(|e| Refused::Invalid(format!("{s:?}: {e}")))
}

/// For clap's `value_parser`: a group name.
pub fn parse_group(s: &str) -> Result<String, String> {
    check(NameKind::Group, s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// For clap's `value_parser`: an agent name.
pub fn parse_agent(s: &str) -> Result<String, String> {
    check(NameKind::Agent, s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// For clap's `value_parser`: an overlay name.
pub fn parse_overlay(s: &str) -> Result<String, String> {
    crate::overlay::check_overlay_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// For clap's `value_parser`: `NAME=PATH` with a valid disk name.
pub fn parse_disk_source(s: &str) -> Result<String, String> {
    disk_source(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Split `NAME=PATH` and check the disk name.
pub fn disk_source(s: &str) -> Result<(&str, &str), Refused> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| Refused::Invalid(format!("disk {s:?}: want NAME=PATH")))?;
    check(NameKind::Disk, name)?;
    if path.is_empty() {
        return Err(Refused::Invalid(format!("disk {s:?}: empty path")));
    }
    Ok((name, path))
}

/// For clap's `value_parser`: an export name whose parts are valid names.
pub fn parse_export(s: &str) -> Result<String, String> {
    let n = ExportName::parse(s).map_err(|e| e.to_string())?;
    check_export(&n).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// An export's group, disk, tag and overlay names are names; a point is never a path.
pub fn check_export(n: &ExportName) -> Result<(), Refused> {
    check(NameKind::Group, &n.group)?;
    check(NameKind::Disk, &n.disk)?;
    match &n.target {
        Target::Latest => Ok(()),
        Target::Overlay(o) => {
            crate::overlay::check_overlay_name(o).map_err(|e| Refused::Invalid(e.to_string()))
        }
        Target::Point(p) => match p.strip_prefix("tag:") {
            Some(t) => check(NameKind::Tag, t),
            // Times and seqs: the point becomes a file name in the view tree.
            None if p.contains('/') || p.contains('\0') => {
                Err(Refused::Invalid(format!("point {p:?}: may not hold '/'")))
            }
            None => Ok(()),
        },
    }
}

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
        crate::overlay::check_overlay_name(&n).map_err(bad_request)?;
        Ok(OverlayPath(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_and_sources() {
        for good in [
            "g/d",
            "g/d@tag:t1",
            "g/d@seq:5",
            "g/d@overlay:o1",
            "g/d@live",
        ] {
            assert!(parse_export(good).is_ok(), "{good}");
        }
        for bad in [
            "../d",
            "g/..",
            "g/d@tag:x/../../y",
            &format!("{}/d", "g".repeat(49)),
            "g/d@overlay:../x",
        ] {
            assert!(parse_export(bad).is_err(), "{bad}");
        }
        assert!(disk_source("sda=/x").is_ok());
        for bad in ["sda", "..=/x", "a/b=/x", "sda="] {
            assert!(disk_source(bad).is_err(), "{bad}");
        }
    }
}
