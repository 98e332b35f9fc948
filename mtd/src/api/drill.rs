//! The drill routes: `POST /v1/groups/{group}/drill` ([`DrillRequest`], answered with the
//! drill's job), `GET /v1/groups/{group}/drill` ([`DrillShow`]: the configuration, the last
//! drill and the last verified point), `POST /v1/groups/{group}/drill/config`
//! ([`DrillConfigRequest`], answered with the group's [`DrillShow`]).

use serde::{Deserialize, Serialize};

pub use crate::drill::config::{DrillConfig, Probe};
pub use crate::drill::evidence::{DrillRecord, GroupDrills, ProbeResult, VerifiedPoint};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRequest {
    /// The point to drill (default: the newest app-consistent point, else the latest).
    #[serde(default)]
    pub point: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillConfigRequest {
    /// None clears the configuration (drills then check file systems, or run the fs-check
    /// probe after the boot).
    pub config: Option<DrillConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillShow {
    pub group: String,
    pub config: Option<DrillConfig>,
    /// Whether a boot command is configured (else the drill checks the file systems).
    pub boot: bool,
    /// Seconds between the drills the target runs itself (the policy's; 0: none).
    pub every_secs: u64,
    #[serde(flatten)]
    pub drills: GroupDrills,
}

/// What `GET /v1/groups` shows of a group's drills (what the site polls and alerts on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillBrief {
    /// The last drill: passed or not, when it ended, its point and one line.
    pub last_ok: Option<bool>,
    pub last_ms: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_summary: Option<String>,
    /// The last verified point: its seq, source time and when the drill proved it.
    pub verified_seq: Option<u64>,
    pub verified_point_time_ms: Option<u64>,
    pub verified_ms: Option<u64>,
    pub every_secs: u64,
}

impl DrillBrief {
    pub fn of(d: &GroupDrills, every_secs: u64) -> DrillBrief {
        DrillBrief {
            last_ok: d.last.as_ref().map(|r| r.ok),
            last_ms: d.last.as_ref().map(|r| r.ended_ms),
            last_seq: d.last.as_ref().map(|r| r.seq),
            last_summary: d.last.as_ref().map(|r| r.summary()),
            verified_seq: d.verified.as_ref().map(|v| v.seq),
            verified_point_time_ms: d.verified.as_ref().and_then(|v| v.point_time_ms),
            verified_ms: d.verified.as_ref().map(|v| v.verified_ms),
            every_secs,
        }
    }
}
