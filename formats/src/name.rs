//! Names of groups, disks, agents and tags.
//!
//! A name is 1..=[`MAX_NAME_LEN`] bytes drawn from `[A-Za-z0-9._:-]`. The alphabet is small on
//! purpose: names become file names, URL path segments and log fields, and none of those should
//! need quoting or be able to hold a `/`; for the same reason `.` and `..` are refused.

use crate::{DecodeError, MAX_NAME_LEN};

/// Checks that `s` is a valid group, disk, agent or tag name.
pub fn validate_name(s: &str) -> Result<(), DecodeError> {
    check_name("name", s)
}

/// [`validate_name`] with the field's own name in the error.
pub(crate) fn check_name(what: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::invalid(what, "empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(DecodeError::too_large(
            what,
            s.len() as u64,
            MAX_NAME_LEN as u64,
        ));
    }
    if s == "." || s == ".." {
        // Allowed by the alphabet, but a name becomes a file name: never a path step.
        return Err(DecodeError::invalid(what, format!("{s:?} is reserved")));
    }
    if let Some(c) = s.chars().find(|c| !is_name_char(*c)) {
        return Err(DecodeError::invalid(
            what,
            format!("character {c:?} not in [A-Za-z0-9._:-]"),
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["a", "web01", "sda", "db.prod:vg-1_x", &"x".repeat(255)] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for n in [
            "",
            "a/b",
            "a b",
            "é",
            "a\0",
            "..\\x",
            ".",
            "..",
            &"x".repeat(256),
        ] {
            assert!(validate_name(n).is_err(), "{n:?}");
        }
    }
}
