//! Durations from outside (retention windows, timeouts): parsed once, checked against a maximum,
//! so that nothing later wraps (`as_millis() as u64`) or panics (`Instant::now() + d`).

use std::time::Duration;

/// The longest retention window: ten years. Longer ones are mistakes, and their milliseconds
/// must fit a u64 with room for arithmetic on them.
pub const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The longest timeout anything from outside may ask for (a plan machine's, a drain's): a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parse a retention window (`24h`, `30m`, `7days`): positive and at most [`MAX_RETENTION`].
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("bad retention {s:?}: {e} (e.g. 24h, 30m, 7days)"))?;
    if d.is_zero() {
        return Err(format!("bad retention {s:?}: must be more than 0"));
    }
    if d > MAX_RETENTION {
        return Err(format!(
            "bad retention {s:?}: at most {}",
            humantime::format_duration(MAX_RETENTION)
        ));
    }
    Ok(d)
}

/// [`parse_retention`] in milliseconds (what manifests store).
pub fn retention_ms(s: &str) -> Result<u64, String> {
    // Cannot truncate: MAX_RETENTION is far below u64::MAX milliseconds.
    parse_retention(s).map(|d| d.as_millis() as u64)
}

/// Parse an interval of the daemon (`--seal-after`, `--merge-interval`): positive and at most
/// [`MAX_TIMEOUT`], so that `now + interval` never overflows.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("bad interval {s:?}: {e}"))?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!(
            "bad interval {s:?}: give more than 0 and at most {}",
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_bounds() {
        assert_eq!(retention_ms("24h"), Ok(86_400_000));
        assert_eq!(retention_ms("1s"), Ok(1000));
        // 2^64 ms wrapped to a small number before: refused now, as is everything past the cap.
        for bad in [
            "18446744073709551616ms",
            "18446744073709551615s",
            "584942417years",
            "11years",
            "0s",
            "soon",
            "",
        ] {
            let e = retention_ms(bad).unwrap_err();
            assert!(e.contains("retention"), "{bad}: {e}");
        }
        assert!(retention_ms("3650days").is_ok());
        assert!(parse_interval("60s").is_ok());
        assert!(parse_interval("18446744073709551615s").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
