//! Wall-clock time as milliseconds since the Unix epoch: the unit of every timestamp Rewind
//! stores or sends (batch times, tags, points in time).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `t`; 0 for a time before the epoch (a clock set wrong
/// must not make a timestamp fail).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn before_the_epoch_is_zero() {
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1234)), 1234);
        assert!(now_ms() > 1_600_000_000_000);
    }
}
