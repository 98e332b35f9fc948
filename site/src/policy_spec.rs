//! From a [`PolicySpec`] (text fields as people write them) to a validated
//! [`Policy`]: each field parsed where it is named, then [`Policy::validate`].

use std::str::FromStr;
use std::time::Duration;

use rewind_formats::policy::{BandwidthSchedule, Policy};

use crate::api::PolicySpec;
use crate::error::ApiError;

/// zstd level when a new policy does not say.
pub const DEFAULT_LEVEL: i32 = 3;
/// Agent spool when a new policy does not say (MiB).
pub const DEFAULT_SPOOL_MIB: u64 = 1024;

fn field(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("policy field {field}: {problem}"))
}

fn secs(name: &str, s: &str) -> Result<u64, ApiError> {
    let d: Duration = humantime::parse_duration(s).map_err(|e| {
        field(
            name,
            format!("{s:?} is not a duration (15m, 24h, 7days): {e}"),
        )
    })?;
    Ok(d.as_secs())
}

fn schedule(name: &str, s: &str) -> Result<BandwidthSchedule, ApiError> {
    BandwidthSchedule::from_str(s).map_err(|e| field(name, e))
}

/// A new policy (version 1) from a spec; `rpo` and `retention` are required.
pub fn create(spec: &PolicySpec) -> Result<Policy, ApiError> {
    let base = Policy {
        name: spec.name.clone(),
        version: 1,
        rpo_target_secs: 0,
        retention_secs: 0,
        app_consistent_every_secs: 0,
        freeze: Vec::new(),
        pre_hook: None,
        post_hook: None,
        level: DEFAULT_LEVEL,
        bandwidth: BandwidthSchedule::default(),
        spool_mib: DEFAULT_SPOOL_MIB,
        initial_sync_window: BandwidthSchedule::default(),
        drill_every_secs: 0,
        ltr_hourly_days: 0,
        ltr_daily_weeks: 0,
        ltr_monthly_months: 0,
    };
    if spec.rpo.is_none() {
        return Err(field("rpo", "required (e.g. --rpo 15m)"));
    }
    if spec.retention.is_none() {
        return Err(field("retention", "required (e.g. --retention 24h)"));
    }
    apply(base, spec)
}

/// `current` with what `spec` changes, its version one higher.
pub fn update(current: &Policy, spec: &PolicySpec) -> Result<Policy, ApiError> {
    let mut next = apply(current.clone(), spec)?;
    next.version = current.version + 1;
    Ok(next)
}

fn apply(mut p: Policy, spec: &PolicySpec) -> Result<Policy, ApiError> {
    if let Some(s) = &spec.rpo {
        p.rpo_target_secs = secs("rpo", s)?;
    }
    if let Some(s) = &spec.retention {
        p.retention_secs = secs("retention", s)?;
    }
    if let Some(s) = &spec.app_consistent_every {
        p.app_consistent_every_secs = if s == "0" || s == "never" {
            0
        } else {
            secs("app_consistent_every", s)?
        };
    }
    if let Some(f) = &spec.freeze {
        p.freeze = f.clone();
    }
    if let Some(h) = &spec.pre_hook {
        p.pre_hook = (!h.is_empty()).then(|| h.clone());
    }
    if let Some(h) = &spec.post_hook {
        p.post_hook = (!h.is_empty()).then(|| h.clone());
    }
    if let Some(l) = spec.level {
        p.level = l;
    }
    if let Some(s) = &spec.bandwidth {
        p.bandwidth = schedule("bandwidth", s)?;
    }
    if let Some(n) = spec.spool_mib {
        p.spool_mib = n;
    }
    if let Some(s) = &spec.drill_every {
        p.drill_every_secs = if s == "0" || s == "never" {
            0
        } else {
            secs("drill_every", s)?
        };
    }
    if let Some(n) = spec.ltr_hourly_days {
        p.ltr_hourly_days = n;
    }
    if let Some(n) = spec.ltr_daily_weeks {
        p.ltr_daily_weeks = n;
    }
    if let Some(n) = spec.ltr_monthly_months {
        p.ltr_monthly_months = n;
    }
    if let Some(s) = &spec.initial_sync_window {
        p.initial_sync_window = schedule("initial_sync_window", s)?;
    }
    p.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PolicySpec {
        PolicySpec {
            name: "gold".into(),
            rpo: Some("15m".into()),
            retention: Some("24h".into()),
            bandwidth: Some("mon-fri 08:00-18:00=20MiB/s, *=unlimited".into()),
            ..Default::default()
        }
    }

    #[test]
    fn fields_are_parsed_and_errors_name_them() {
        let p = create(&spec()).unwrap();
        assert_eq!(
            (p.version, p.rpo_target_secs, p.retention_secs),
            (1, 900, 86_400)
        );
        let u = update(
            &p,
            &PolicySpec {
                name: "gold".into(),
                retention: Some("48h".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (u.version, u.retention_secs, u.rpo_target_secs),
            (2, 172_800, 900)
        );
        let d = update(
            &u,
            &PolicySpec {
                name: "gold".into(),
                drill_every: Some("7d".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((d.version, d.drill_every_secs), (3, 7 * 86_400));
        let off = PolicySpec {
            name: "gold".into(),
            drill_every: Some("never".into()),
            ..Default::default()
        };
        assert_eq!(update(&d, &off).unwrap().drill_every_secs, 0);
        let lt = update(
            &d,
            &PolicySpec {
                name: "gold".into(),
                ltr_daily_weeks: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((lt.ltr_daily_weeks, lt.ltr_hourly_days), (5, 0));
        let too_long = PolicySpec {
            name: "gold".into(),
            ltr_monthly_months: Some(5000),
            ..Default::default()
        };
        let e = update(&d, &too_long).unwrap_err();
        assert!(e.message.contains("ltr_monthly_months"), "{}", e.message);
        for (change, field) in [
            (
                PolicySpec {
                    bandwidth: Some("mon-fri=20 furlongs".into()),
                    ..spec()
                },
                "bandwidth",
            ),
            (
                PolicySpec {
                    retention: Some("forever".into()),
                    ..spec()
                },
                "retention",
            ),
            (
                PolicySpec {
                    level: Some(40),
                    ..spec()
                },
                "level",
            ),
            (
                PolicySpec {
                    rpo: None,
                    ..spec()
                },
                "rpo",
            ),
            (
                PolicySpec {
                    name: "a/b".into(),
                    ..spec()
                },
                "name",
            ),
            (
                PolicySpec {
                    freeze: Some(vec!["rel".into()]),
                    ..spec()
                },
                "freeze",
            ),
        ] {
            let e = create(&change).unwrap_err();
            assert!(
                e.message.starts_with(&format!("policy field {field}")),
                "{field}: {}",
                e.message
            );
        }
    }
}
