//! Names of groups, disks, agents, tags and plans.
//!
//! A name is drawn from `[A-Za-z0-9._:-]`. The alphabet is small on purpose: names become file
//! names, URL path segments and log fields, and none of those should need quoting or be able to
//! hold a `/`; for the same reason `.` and `..` are refused.
//!
//! Each kind of name has its own maximum length ([`NameKind::max_len`]), chosen so that every
//! later use of the name fits:
//! - group and disk names ([`MAX_GROUP_LEN`], [`MAX_DISK_LEN`]): a failover's overlay is named
//!   `failover-test.LEN.GROUP.DISK` with `_` and `:` escaped to two characters, and must fit an
//!   overlay name (and its temporary directory name) under the file-name limit of 255 bytes; the
//!   reverse agent of a group is named `rewind-reverse-GROUP`, which must fit an agent name;
//! - agent names ([`MAX_AGENT_LEN`]): host names, which are at most 64 bytes;
//! - tag names ([`MAX_TAG_LEN`]): `tag:NAME.img` in the view tree must fit a file name.
//!
//! [`crate::MAX_NAME_LEN`] (255) stays the representation limit of the u8 length prefix, so
//! files written before these limits still decode. The wire decoders check a group or disk name
//! against its own limit (see `check_name`): a HELLO cannot create a group that could never fail
//! over.

use crate::{DecodeError, MAX_NAME_LEN};

/// Longest group name, in bytes.
pub const MAX_GROUP_LEN: usize = 48;
/// Longest disk name, in bytes.
pub const MAX_DISK_LEN: usize = 48;
/// Longest agent name, in bytes (a host name's limit).
pub const MAX_AGENT_LEN: usize = 64;
/// Longest tag name accepted from now on, in bytes.
pub const MAX_TAG_LEN: usize = 128;
/// Longest recovery plan name, in bytes.
pub const MAX_PLAN_LEN: usize = 64;

/// What a name names: each kind has its own maximum length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Group,
    Disk,
    Agent,
    Tag,
    Plan,
    /// A name with only the representation limit (the access group, old files).
    Any,
}

impl NameKind {
    pub fn max_len(self) -> usize {
        match self {
            NameKind::Group => MAX_GROUP_LEN,
            NameKind::Disk => MAX_DISK_LEN,
            NameKind::Agent => MAX_AGENT_LEN,
            NameKind::Tag => MAX_TAG_LEN,
            NameKind::Plan => MAX_PLAN_LEN,
            NameKind::Any => MAX_NAME_LEN,
        }
    }

    /// The field name errors use.
    pub fn what(self) -> &'static str {
        match self {
            NameKind::Group => "group name",
            NameKind::Disk => "disk name",
            NameKind::Agent => "agent name",
            NameKind::Tag => "tag name",
            NameKind::Plan => "plan name",
            NameKind::Any => "name",
        }
    }
}

/// Checks that `s` is a valid name of any kind (only the representation limit of 255 bytes):
/// prefer [`validate`] with the name's kind.
pub fn validate_name(s: &str) -> Result<(), DecodeError> {
    check(NameKind::Any.what(), NameKind::Any.max_len(), s)
}

/// Checks that `s` is a valid name of kind `kind`: the one check every entry point (wire, control
/// API, CLI, config and plan files) applies before a name reaches a path.
pub fn validate(kind: NameKind, s: &str) -> Result<(), DecodeError> {
    check(kind.what(), kind.max_len(), s)
}

/// The wire decoders' check of a name field. Group and disk names get their own limits (the
/// decoders name those fields "group name" and "disk name"); other fields (tags, agents, and the
/// group name in a segment header, which was written before the limits) keep the representation
/// limit so stored data still decodes.
pub(crate) fn check_name(what: &'static str, s: &str) -> Result<(), DecodeError> {
    let max = match what {
        "group name" => MAX_GROUP_LEN,
        "disk name" => MAX_DISK_LEN,
        _ => MAX_NAME_LEN,
    };
    check(what, max, s)
}

fn check(what: &'static str, max: usize, s: &str) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::invalid(what, "empty"));
    }
    if s.len() > max {
        return Err(DecodeError::too_large(what, s.len() as u64, max as u64));
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

/// Declares a name type that can only hold a valid name of its kind: validated once, where it
/// enters (wire, control API, CLI, config file), and trusted everywhere after.
macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// Validates `s` as a name of this kind.
            pub fn new(s: impl Into<String>) -> Result<$ty, DecodeError> {
                let s = s.into();
                validate($kind, &s)?;
                Ok($ty(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = DecodeError;
            fn try_from(s: String) -> Result<$ty, DecodeError> {
                $ty::new(s)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = DecodeError;
            fn from_str(s: &str) -> Result<$ty, DecodeError> {
                $ty::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

name_type!(
    /// A consistency group's name (at most [`MAX_GROUP_LEN`] bytes of `[A-Za-z0-9._:-]`).
    GroupName,
    NameKind::Group
);
name_type!(
    /// A disk's name within its group (at most [`MAX_DISK_LEN`] bytes of `[A-Za-z0-9._:-]`).
    DiskName,
    NameKind::Disk
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["a", "web01", "sda", "db.prod:vg-1_x", &"x".repeat(255)] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
        for kind in [
            NameKind::Group,
            NameKind::Disk,
            NameKind::Agent,
            NameKind::Tag,
            NameKind::Plan,
        ] {
            assert_eq!(validate(kind, &"x".repeat(kind.max_len())), Ok(()));
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
            "../x",
            "..%2F..%2Fx",
            &"x".repeat(256),
        ] {
            assert!(validate_name(n).is_err(), "{n:?}");
            assert!(validate(NameKind::Group, n).is_err(), "{n:?}");
        }
    }

    #[test]
    fn each_kind_has_its_limit() {
        for kind in [
            NameKind::Group,
            NameKind::Disk,
            NameKind::Agent,
            NameKind::Tag,
            NameKind::Plan,
        ] {
            let e = validate(kind, &"x".repeat(kind.max_len() + 1))
                .unwrap_err()
                .to_string();
            assert!(e.contains(kind.what()), "{e}");
            assert!(e.contains(&kind.max_len().to_string()), "{e}");
        }
        // The wire's group and disk fields use the same limits; others only the representation's.
        assert!(check_name("group name", &"g".repeat(MAX_GROUP_LEN + 1)).is_err());
        assert!(check_name("disk name", &"d".repeat(MAX_DISK_LEN + 1)).is_err());
        assert!(check_name("tag name", &"t".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("segment group name", &"g".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn a_groups_reverse_agent_name_is_an_agent_name() {
        // `rewind-reverse-GROUP` (mtd's failover/reverse.rs) must be a valid agent name.
        let g = "g".repeat(MAX_GROUP_LEN);
        assert_eq!(
            validate(NameKind::Agent, &format!("rewind-reverse-{g}")),
            Ok(())
        );
    }

    #[test]
    fn typed_names_validate_once() {
        let g: GroupName = "web".parse().unwrap();
        assert_eq!(g.as_str(), "web");
        assert!(GroupName::new("a/b").is_err());
        assert!(DiskName::new("d".repeat(MAX_DISK_LEN + 1)).is_err());
        let d: DiskName = serde_json::from_str("\"sda\"").unwrap();
        assert_eq!(d.to_string(), "sda");
        assert!(serde_json::from_str::<DiskName>("\"..\"").is_err());
    }
}
