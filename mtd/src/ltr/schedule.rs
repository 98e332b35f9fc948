//! Which periods the policy's long-term tiers keep a point of, and until when.
//!
//! Hourly points for `ltr_hourly_days` days, daily (UTC days) for `ltr_daily_weeks` weeks,
//! monthly (UTC calendar months) for `ltr_monthly_months` months. A period keeps one point (see
//! `Group::period_point`); it is kept until the period's end plus its tier's length, and a point
//! two tiers keep (the last of a day is also the last of its last hour) lasts the longer.
//!
//! Tests cannot wait an hour: the hidden `rewind-mtd serve --ltr-test-hour 2s` (logged loudly)
//! makes an "hour" that long, a day 24 of them and a month 30 days.

use std::time::Duration;

use rewind_formats::policy::Policy;

/// One period of a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub tier: &'static str,
    pub start_ms: u64,
    pub end_ms: u64,
    pub keep_until_ms: u64,
}

/// The length of an hour, and whether months follow the calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub hour_ms: u64,
}

const REAL_HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * REAL_HOUR_MS;

impl Clock {
    pub fn real() -> Clock {
        Clock {
            hour_ms: REAL_HOUR_MS,
        }
    }

    /// The real clock, or (tests only) one whose hour lasts `test_hour`.
    pub fn new(test_hour: Option<Duration>) -> Clock {
        match test_hour.filter(|d| *d >= Duration::from_millis(100)) {
            Some(d) => {
                tracing::warn!(hour = ?d, "TEST ONLY: --ltr-test-hour shortens long-term retention's hour");
                Clock {
                    hour_ms: d.as_millis() as u64,
                }
            }
            None => Clock::real(),
        }
    }

    fn calendar(&self) -> bool {
        self.hour_ms == REAL_HOUR_MS
    }

    /// How long after a period's end its kept point is taken as final even if no newer point
    /// came (an idle disk): late batches are stamped within this.
    pub fn settle_ms(&self) -> u64 {
        (self.hour_ms / 60).clamp(100, 60_000)
    }
}

/// The periods ending in the last stretch of each tier, up to `now_ms`, oldest first.
pub fn periods(p: &Policy, now_ms: u64, clock: &Clock) -> Vec<Period> {
    let h = clock.hour_ms;
    let d = 24 * h;
    let mut out = Vec::new();
    fixed(&mut out, "hourly", h, p.ltr_hourly_days * d, now_ms);
    fixed(&mut out, "daily", d, p.ltr_daily_weeks * 7 * d, now_ms);
    if clock.calendar() {
        months(&mut out, p.ltr_monthly_months, now_ms);
    } else {
        fixed(
            &mut out,
            "monthly",
            30 * d,
            p.ltr_monthly_months * 30 * d,
            now_ms,
        );
    }
    out.sort_by_key(|p| (p.end_ms, p.keep_until_ms));
    out
}

/// Periods of `len` (aligned to the epoch) ending in `(now - span, now]`.
fn fixed(out: &mut Vec<Period>, tier: &'static str, len: u64, span: u64, now_ms: u64) {
    if span == 0 {
        return;
    }
    let last = now_ms / len;
    let first = now_ms.saturating_sub(span) / len + 1;
    for k in first.max(1)..=last {
        let end = k * len;
        out.push(Period {
            tier,
            start_ms: end - len,
            end_ms: end,
            keep_until_ms: end + span,
        });
    }
}

/// Calendar months (UTC) that ended within the last `n` months.
fn months(out: &mut Vec<Period>, n: u64, now_ms: u64) {
    let (y, m, _) = civil_from_days((now_ms / DAY_MS) as i64);
    let month_index = y * 12 + (m as i64 - 1);
    for j in 0..n as i64 {
        let end = month_start_ms(month_index - j);
        let start = month_start_ms(month_index - j - 1);
        let keep = month_start_ms(month_index - j + n as i64);
        out.push(Period {
            tier: "monthly",
            start_ms: start,
            end_ms: end,
            keep_until_ms: keep,
        });
    }
}

fn month_start_ms(month_index: i64) -> u64 {
    let (y, m) = (month_index.div_euclid(12), month_index.rem_euclid(12) + 1);
    (days_from_civil(y, m as u32, 1).max(0) as u64) * DAY_MS
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(h: u64, d: u64, m: u64) -> Policy {
        let mut p: Policy = serde_json::from_str(
            r#"{"name":"p","version":1,"rpo_target_secs":60,"retention_secs":60,"level":3}"#,
        )
        .unwrap();
        (p.ltr_hourly_days, p.ltr_daily_weeks, p.ltr_monthly_months) = (h, d, m);
        p
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-1000, 0, 59, 60, 365, 11_016, 20_000, 20_454] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(days_from_civil(2026, 12, 1), 20_788);
    }

    #[test]
    fn tiers_give_their_periods_and_expiries() {
        // 2026-12-05T06:30:00Z
        let now = 20_792 * DAY_MS + 6 * REAL_HOUR_MS + 30 * 60_000;
        let ps = periods(&policy(1, 1, 2), now, &Clock::real());
        let hourly: Vec<_> = ps.iter().filter(|p| p.tier == "hourly").collect();
        assert_eq!(hourly.len(), 24);
        let last = hourly.last().unwrap();
        assert_eq!(last.end_ms, 20_792 * DAY_MS + 6 * REAL_HOUR_MS);
        assert_eq!(last.keep_until_ms, last.end_ms + DAY_MS);
        assert_eq!(ps.iter().filter(|p| p.tier == "daily").count(), 7);
        let monthly: Vec<_> = ps.iter().filter(|p| p.tier == "monthly").collect();
        assert_eq!(monthly.len(), 2);
        // November 2026 ended on December 1st and is kept until February 1st 2027.
        let nov = monthly
            .iter()
            .find(|p| p.end_ms == 20_788 * DAY_MS)
            .unwrap();
        assert_eq!(nov.start_ms, days_from_civil(2026, 11, 1) as u64 * DAY_MS);
        assert_eq!(
            nov.keep_until_ms,
            days_from_civil(2027, 2, 1) as u64 * DAY_MS
        );
        assert!(periods(&policy(0, 0, 0), now, &Clock::real()).is_empty());
        let test = Clock { hour_ms: 2000 };
        let ps = periods(&policy(1, 0, 0), 100_000, &test);
        assert_eq!(ps.len(), 24);
        assert_eq!(ps.last().unwrap().end_ms, 100_000);
    }
}
