//! Names from outside (URL paths, request bodies, CLI arguments, plan files), validated once at
//! the edge with `rewind_formats::name` before they reach a path. The control API, the CLIs and
//! failovers all check through here; a refusal is `Refused::Invalid` (a 400 on the API).

use rewind_formats::name::{self, NameKind};

use crate::refused::Refused;
use crate::views::exports::{ExportName, Target};

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
    crate::views::overlay::check_overlay_name(s)
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
        Target::Overlay(o) => crate::views::overlay::check_overlay_name(o)
            .map_err(|e| Refused::Invalid(e.to_string())),
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
