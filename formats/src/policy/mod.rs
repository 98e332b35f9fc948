//! A replication policy: the settings a configuration server applies to a group, carried to the
//! master target over its control API and from the target to the agent in a CONTROL frame (op 6,
//! the policy as JSON in `arg`).
//!
//! One type on every side, so the site, the target and the agent cannot disagree on a field. The
//! policy is validated once where it enters ([`Policy::validate`]); both ends of the wire call it
//! again on decode because a CONTROL frame is input too.

mod schedule;

pub use schedule::{BandwidthSchedule, Rate, ScheduleError, Weekday};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Most filesystems one policy freezes for an app-consistent point.
pub const MAX_FREEZE: usize = 16;
/// How an agent's ERROR frame begins when it cannot apply a policy it was sent, followed by the
/// group's name, `: ` and why (`policy refused: web: policy field level: ...`). The target records
/// it and the session goes on; any other ERROR from an agent ends its session.
pub const REFUSED_PREFIX: &str = "policy refused: ";

/// Highest zstd level a policy may ask the agent for (above it the CPU cost is not worth it).
pub const MAX_LEVEL: i32 = 19;

/// Settings a configuration server gives a group; `version` grows on every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name (validated like a group name).
    pub name: String,
    /// Grows by one on every change of the policy; 1 is the first.
    pub version: u64,
    /// The RPO the group should hold, in seconds (alerts fire above it).
    pub rpo_target_secs: u64,
    /// How far back the journal keeps every point, in seconds.
    pub retention_secs: u64,
    /// Seconds between app-consistent points (freeze, tag, thaw); 0 means none.
    #[serde(default)]
    pub app_consistent_every_secs: u64,
    /// Mount points frozen for an app-consistent point.
    #[serde(default)]
    pub freeze: Vec<String>,
    /// A script run before the freeze (absolute path), e.g. to quiesce a database.
    #[serde(default)]
    pub pre_hook: Option<String>,
    /// A script run after the thaw (absolute path).
    #[serde(default)]
    pub post_hook: Option<String>,
    /// zstd level for the stream (1..=MAX_LEVEL).
    pub level: i32,
    /// Bandwidth limit by time of week (UTC).
    #[serde(default)]
    pub bandwidth: BandwidthSchedule,
    /// The agent's disk spool, in MiB (0: no spool, straight to bitmap mode when memory fills).
    #[serde(default)]
    pub spool_mib: u64,
    /// When initial sync and resync may run and how fast (UTC); a rate of 0 holds them.
    #[serde(default)]
    pub initial_sync_window: BandwidthSchedule,
    /// Seconds between drills the target runs by itself (test failover of the newest
    /// app-consistent point, boot, probes: docs/DRILLS.md); 0 means none. Left out of the JSON
    /// when 0, so agents that predate it still take the policy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drill_every_secs: u64,
    /// Long-term retention (the target's business, like drills; left out of the JSON when 0):
    /// keep one point per hour for this many days (0: off). The kept point of an hour is the
    /// newest point at or before its end, or the newest app-consistent point in the hour if
    /// there is one (docs/LTR.md).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ltr_hourly_days: u64,
    /// Keep one point per day (UTC) for this many weeks (0: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ltr_daily_weeks: u64,
    /// Keep one point per calendar month (UTC) for this many months (0: off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ltr_monthly_months: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Longest period between drills (a year: a drill less often proves little).
pub const MAX_DRILL_EVERY_SECS: u64 = 366 * 86_400;

/// Most days of hourly long-term points (a year).
pub const MAX_LTR_HOURLY_DAYS: u64 = 366;
/// Most weeks of daily long-term points (ten years).
pub const MAX_LTR_DAILY_WEEKS: u64 = 522;
/// Most months of monthly long-term points (a hundred years).
pub const MAX_LTR_MONTHLY_MONTHS: u64 = 1200;

/// Why a policy was refused: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy field {field}: {problem}")]
pub struct PolicyError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: impl fmt::Display) -> PolicyError {
    PolicyError {
        field,
        problem: problem.to_string(),
    }
}

impl Policy {
    /// Checks every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), PolicyError> {
        crate::validate_name(&self.name).map_err(|e| bad("name", e))?;
        if self.version == 0 {
            return Err(bad("version", "must be at least 1"));
        }
        if self.rpo_target_secs == 0 {
            return Err(bad("rpo_target_secs", "must be at least 1 second"));
        }
        if self.retention_secs == 0 {
            return Err(bad("retention_secs", "must be at least 1 second"));
        }
        if !(1..=MAX_LEVEL).contains(&self.level) {
            return Err(bad(
                "level",
                format!("{} is not in 1..={MAX_LEVEL}", self.level),
            ));
        }
        if self.freeze.len() > MAX_FREEZE {
            return Err(bad("freeze", format!("at most {MAX_FREEZE} mount points")));
        }
        for path in &self.freeze {
            check_path("freeze", path)?;
        }
        for (field, hook) in [("pre_hook", &self.pre_hook), ("post_hook", &self.post_hook)] {
            if let Some(path) = hook {
                check_path(field, path)?;
            }
        }
        if self.drill_every_secs > MAX_DRILL_EVERY_SECS {
            return Err(bad(
                "drill_every_secs",
                format!(
                    "{} is over {MAX_DRILL_EVERY_SECS} (a year); 0 turns drills off",
                    self.drill_every_secs
                ),
            ));
        }
        for (field, value, max, unit) in [
            (
                "ltr_hourly_days",
                self.ltr_hourly_days,
                MAX_LTR_HOURLY_DAYS,
                "days",
            ),
            (
                "ltr_daily_weeks",
                self.ltr_daily_weeks,
                MAX_LTR_DAILY_WEEKS,
                "weeks",
            ),
            (
                "ltr_monthly_months",
                self.ltr_monthly_months,
                MAX_LTR_MONTHLY_MONTHS,
                "months",
            ),
        ] {
            if value > max {
                return Err(bad(
                    field,
                    format!("{value} is over {max} {unit}; 0 turns the tier off"),
                ));
            }
        }
        if self.app_consistent_every_secs > 0 && self.freeze.is_empty() {
            return Err(bad(
                "freeze",
                "app-consistent points need at least one mount point to freeze",
            ));
        }
        Ok(())
    }

    /// The CONTROL frame's `arg`: the policy as JSON (it fits a frame text by construction).
    /// Whether any long-term retention tier is on.
    pub fn ltr_on(&self) -> bool {
        self.ltr_hourly_days + self.ltr_daily_weeks + self.ltr_monthly_months > 0
    }

    pub fn to_control_arg(&self) -> String {
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_string(self).expect("a policy serialises")
    }

    /// The policy in a CONTROL frame's `arg`, decoded and validated.
    pub fn from_control_arg(arg: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = serde_json::from_str(arg).map_err(|e| bad("json", e))?;
        policy.validate()?;
        Ok(policy)
    }
}

fn check_path(field: &'static str, path: &str) -> Result<(), PolicyError> {
    if !path.starts_with('/') {
        return Err(bad(field, format!("{path:?} is not an absolute path")));
    }
    if path.len() > 1024 || path.contains('\0') || path.split('/').any(|c| c == "..") {
        return Err(bad(field, format!("{path:?} is not a plain absolute path")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
