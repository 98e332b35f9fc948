//! Names and labels from outside, checked once where they enter (API handlers, CLI).

use crate::error::ApiError;

/// A name of `what` (user, token, target, group, policy, host, disk, label key or value):
/// the project's name rules ([`rewind_formats::validate_name`]).
pub fn check(what: &str, s: &str) -> Result<(), ApiError> {
    rewind_formats::validate_name(s)
        .map_err(|e| ApiError::bad_request(format!("{what} {s:?}: {e}")))
}

/// A `KEY=VALUE` label, both parts names.
pub fn label(s: &str) -> Result<(String, String), ApiError> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| ApiError::bad_request(format!("label {s:?}: give KEY=VALUE")))?;
    check("label key", k)?;
    check("label value", v)?;
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names() {
        assert_eq!(label("tier=gold").unwrap(), ("tier".into(), "gold".into()));
        assert!(label("tier").unwrap_err().message.contains("KEY=VALUE"));
        assert!(label("a/b=c").is_err());
        assert!(check("group", "../x")
            .unwrap_err()
            .message
            .contains("group \"../x\""));
    }
}
