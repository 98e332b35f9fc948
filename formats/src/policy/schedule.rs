//! A weekly bandwidth schedule: `mon-fri 08:00-18:00=20MiB/s, sat=5MiB/s, *=unlimited`.
//!
//! Rules are tried in order and the first that matches the time wins; a time no rule matches is
//! unlimited. A rule is `[DAYS] [HH:MM-HH:MM]=RATE`, or `*=RATE` for any time:
//! - DAYS: a day (`mon` .. `sun`) or a range (`mon-fri`, `fri-mon` wraps past Sunday);
//! - HH:MM-HH:MM: a range of the day, end excluded; an end before the start wraps past midnight
//!   (the part after midnight belongs to the next day, so `fri 22:00-06:00` runs into Saturday);
//! - RATE: `unlimited`, `0` (hold: nothing is sent), or a size per second (`20MiB/s`, `500KB/s`).
//!
//! Times are UTC: the agent and the target may sit in different zones, the schedule must not.
//! It serialises as the string it was parsed from (normalised), so policies stay readable.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most rules one schedule holds.
pub const MAX_RULES: usize = 32;

/// A day of the week; Monday is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weekday(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Weekday {
    /// The weekday of a UNIX time in seconds (1970-01-01 was a Thursday).
    pub fn of_unix(secs: u64) -> Weekday {
        Weekday(((secs / 86_400 + 3) % 7) as u8)
    }

    fn parse(s: &str) -> Option<Weekday> {
        DAY_NAMES
            .iter()
            .position(|d| *d == s)
            .map(|i| Weekday(i as u8))
    }

    fn prev(self) -> Weekday {
        Weekday((self.0 + 6) % 7)
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DAY_NAMES[self.0 as usize])
    }
}

/// A bandwidth: bytes per second, or no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Unlimited,
    BytesPerSec(u64),
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::BytesPerSec(0) => f.write_str("0"),
            // The largest binary unit that divides the rate, so `20MiB/s` reads back as written.
            Rate::BytesPerSec(n) => match [(30, "GiB"), (20, "MiB"), (10, "KiB")]
                .into_iter()
                .find(|(shift, _)| n % (1u64 << shift) == 0)
            {
                Some((shift, unit)) => write!(f, "{}{unit}/s", n >> shift),
                None => write!(f, "{n}B/s"),
            },
        }
    }
}

/// One rule: days (inclusive, may wrap), minutes of the day (end excluded, may wrap), a rate.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    days: Option<(Weekday, Weekday)>,
    minutes: Option<(u16, u16)>,
    rate: Rate,
}

/// Why a schedule string was refused: the rule and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bandwidth schedule rule {rule:?}: {problem}")]
pub struct ScheduleError {
    pub rule: String,
    pub problem: String,
}

/// A weekly schedule of bandwidth limits; the default has no rule (always unlimited).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BandwidthSchedule {
    rules: Vec<Rule>,
}

impl BandwidthSchedule {
    /// The rate at a UNIX time in seconds (UTC).
    pub fn rate_at_unix(&self, secs: u64) -> Rate {
        let minute = ((secs % 86_400) / 60) as u16;
        self.rate_at(Weekday::of_unix(secs), minute)
    }

    /// The rate on `day` at `minute` (0..1440) of the day.
    pub fn rate_at(&self, day: Weekday, minute: u16) -> Rate {
        self.rules
            .iter()
            .find(|r| r.matches(day, minute))
            .map_or(Rate::Unlimited, |r| r.rate)
    }

    /// Whether the schedule has no rule (always unlimited).
    pub fn is_unlimited(&self) -> bool {
        self.rules.iter().all(|r| r.rate == Rate::Unlimited)
    }
}

impl Rule {
    fn matches(&self, day: Weekday, minute: u16) -> bool {
        match self.minutes {
            None => self.day_in(day),
            Some((start, end)) if start < end => self.day_in(day) && (start..end).contains(&minute),
            // Wraps past midnight: the evening part on a listed day, the morning part on the day
            // after one.
            Some((start, end)) => {
                (minute >= start && self.day_in(day)) || (minute < end && self.day_in(day.prev()))
            }
        }
    }

    fn day_in(&self, day: Weekday) -> bool {
        match self.days {
            None => true,
            Some((a, b)) if a <= b => (a..=b).contains(&day),
            Some((a, b)) => day >= a || day <= b,
        }
    }
}

fn parse_minute(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 is allowed as an end ("until midnight").
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    match s {
        "unlimited" => return Ok(Rate::Unlimited),
        "0" => return Ok(Rate::BytesPerSec(0)),
        _ => {}
    }
    let size = s
        .strip_suffix("/s")
        .ok_or_else(|| format!("rate {s:?} is not `unlimited`, `0` or SIZE/s (e.g. 20MiB/s)"))?;
    let bytes = parse_size::parse_size(size).map_err(|e| format!("rate {s:?}: {e}"))?;
    Ok(Rate::BytesPerSec(bytes))
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let (when, rate) = text
        .rsplit_once('=')
        .ok_or("expected WHEN=RATE (e.g. mon-fri 08:00-18:00=20MiB/s, or *=unlimited)")?;
    let rate = parse_rate(rate.trim())?;
    let when = when.trim();
    if when == "*" {
        return Ok(Rule {
            days: None,
            minutes: None,
            rate,
        });
    }
    let mut days = None;
    let mut minutes = None;
    for part in when.split_whitespace() {
        if let Some((a, b)) = part.split_once(':').and(part.split_once('-')) {
            let (start, end) = (parse_minute(a), parse_minute(b));
            match (start, end, minutes) {
                (Some(s), Some(e), None) if s != e && s < 1440 => minutes = Some((s, e % 1440)),
                (_, _, Some(_)) => return Err("more than one time range".into()),
                _ => return Err(format!("{part:?} is not a time range HH:MM-HH:MM")),
            }
        } else if days.is_none() {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            match (Weekday::parse(a), Weekday::parse(b)) {
                (Some(a), Some(b)) => days = Some((a, b)),
                _ => return Err(format!("{part:?} is not a day (mon..sun) or a day range")),
            }
        } else {
            return Err(format!("{part:?}: more than one day range"));
        }
    }
    if days.is_none() && minutes.is_none() {
        return Err("no days or time range before `=` (use * for any time)".into());
    }
    Ok(Rule {
        days,
        minutes,
        rate,
    })
}

impl FromStr for BandwidthSchedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rules = Vec::new();
        for text in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if rules.len() == MAX_RULES {
                return Err(ScheduleError {
                    rule: text.into(),
                    problem: format!("at most {MAX_RULES} rules"),
                });
            }
            let rule = parse_rule(text).map_err(|problem| ScheduleError {
                rule: text.into(),
                problem,
            })?;
            rules.push(rule);
        }
        Ok(BandwidthSchedule { rules })
    }
}

impl fmt::Display for BandwidthSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let mut when = Vec::new();
            if let Some((a, b)) = r.days {
                when.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
            }
            if let Some((s, e)) = r.minutes {
                let e = if e == 0 { 1440 } else { e };
                when.push(format!(
                    "{:02}:{:02}-{:02}:{:02}",
                    s / 60,
                    s % 60,
                    e / 60,
                    e % 60
                ));
            }
            let when = if when.is_empty() {
                "*".to_string()
            } else {
                when.join(" ")
            };
            write!(f, "{when}={}", r.rate)?;
        }
        Ok(())
    }
}

impl TryFrom<String> for BandwidthSchedule {
    type Error = ScheduleError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BandwidthSchedule> for String {
    fn from(s: BandwidthSchedule) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn day(s: &str) -> Weekday {
        Weekday::parse(s).unwrap()
    }

    #[test]
    fn the_issue_example_limits_office_hours_only() {
        let s: BandwidthSchedule = "mon-fri 08:00-18:00=20MiB/s, *=unlimited".parse().unwrap();
        assert_eq!(s.rate_at(day("mon"), 8 * 60), Rate::BytesPerSec(20 * MIB));
        assert_eq!(
            s.rate_at(day("fri"), 18 * 60 - 1),
            Rate::BytesPerSec(20 * MIB)
        );
        assert_eq!(s.rate_at(day("fri"), 18 * 60), Rate::Unlimited);
        assert_eq!(s.rate_at(day("sat"), 9 * 60), Rate::Unlimited);
        assert_eq!(s.rate_at(day("wed"), 7 * 60 + 59), Rate::Unlimited);
        assert_eq!(s.to_string(), "mon-fri 08:00-18:00=20MiB/s, *=unlimited");
        let odd: BandwidthSchedule = "*=1000B/s".parse().unwrap();
        assert_eq!(odd.to_string(), "*=1000B/s");
    }

    #[test]
    fn ranges_wrap_past_midnight_and_sunday() {
        let s: BandwidthSchedule = "fri 22:00-06:00=0, sat-mon=1MiB/s".parse().unwrap();
        assert_eq!(s.rate_at(day("fri"), 23 * 60), Rate::BytesPerSec(0));
        // Saturday morning is the tail of Friday night's rule.
        assert_eq!(s.rate_at(day("sat"), 5 * 60), Rate::BytesPerSec(0));
        assert_eq!(s.rate_at(day("sat"), 6 * 60), Rate::BytesPerSec(MIB));
        assert_eq!(s.rate_at(day("sun"), 12 * 60), Rate::BytesPerSec(MIB));
        assert_eq!(s.rate_at(day("mon"), 12 * 60), Rate::BytesPerSec(MIB));
        assert_eq!(s.rate_at(day("tue"), 12 * 60), Rate::Unlimited);
        assert_eq!(s.rate_at(day("fri"), 21 * 60), Rate::Unlimited);
    }

    #[test]
    fn unix_times_map_to_utc_weekdays() {
        // 1970-01-01 was a Thursday; 2026-12-04 is a Friday.
        assert_eq!(Weekday::of_unix(0), day("thu"));
        assert_eq!(Weekday::of_unix(1_796_342_400), day("fri"));
        let s: BandwidthSchedule = "thu 00:00-01:00=1MiB/s".parse().unwrap();
        assert_eq!(s.rate_at_unix(59 * 60), Rate::BytesPerSec(MIB));
        assert_eq!(s.rate_at_unix(60 * 60), Rate::Unlimited);
    }

    #[test]
    fn display_parses_back_to_the_same_schedule() {
        for text in [
            "",
            "*=0",
            "sun=5MiB/s",
            "mon-fri 20:00-24:00=unlimited, *=0",
            "sat 23:00-01:30=7KB/s",
        ] {
            let s: BandwidthSchedule = text.parse().unwrap();
            let again: BandwidthSchedule = s.to_string().parse().unwrap();
            assert_eq!(s, again, "{text:?} -> {s}");
        }
        assert!(BandwidthSchedule::default().is_unlimited());
    }

    #[test]
    fn bad_rules_say_which_rule_and_why() {
        for (text, bad_rule) in [
            ("mon-fri 08:00-18:00", "mon-fri 08:00-18:00"),
            ("*=fast", "*=fast"),
            ("*=20MiB", "*=20MiB"),
            ("moon=1MiB/s", "moon=1MiB/s"),
            ("mon 25:00-26:00=0", "mon 25:00-26:00=0"),
            ("mon 08:00-08:00=0", "mon 08:00-08:00=0"),
            (
                "mon 01:00-02:00 03:00-04:00=0",
                "mon 01:00-02:00 03:00-04:00=0",
            ),
            ("*=0, =1MiB/s", "=1MiB/s"),
        ] {
            let err = text.parse::<BandwidthSchedule>().unwrap_err();
            assert_eq!(err.rule, bad_rule, "{text:?}: {err}");
        }
        let many = vec!["*=0"; MAX_RULES + 1].join(",");
        assert!(many
            .parse::<BandwidthSchedule>()
            .unwrap_err()
            .problem
            .contains("at most"));
    }

    #[test]
    fn a_schedule_serialises_as_its_string() {
        let s: BandwidthSchedule = "sat-sun=unlimited, *=0".parse().unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"sat-sun=unlimited, *=0\"");
        assert_eq!(serde_json::from_str::<BandwidthSchedule>(&json).unwrap(), s);
        assert!(serde_json::from_str::<BandwidthSchedule>("\"*=x\"").is_err());
    }
}
