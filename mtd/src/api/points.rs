//! `GET /v1/groups/{group}/points`: the recovery points of one group.

use serde::{Deserialize, Serialize};

pub use crate::views::inspect::{PointReport, TagReport, UnrecoverableReport};

/// Every seq from the oldest to the newest is a crash-consistent point; tags name some of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointsReport {
    pub group: String,
    pub horizon_seq: u64,
    pub durable_seq: u64,
    pub oldest: Option<PointReport>,
    pub newest: Option<PointReport>,
    pub latest_app_consistent: Option<TagReport>,
    /// Named points (resync markers are reported as `not_recoverable` instead).
    pub tags: Vec<TagReport>,
    /// Seq ranges inside a resync: not recoverable.
    pub not_recoverable: Vec<UnrecoverableReport>,
    /// No resync is running.
    pub consistent: bool,
    /// The last point a drill proved recoverable (`rewind drill run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<crate::api::drill::VerifiedPoint>,
    /// The last drill, when it failed (a failed drill leaves `verified` as it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_failed: Option<String>,
    /// Long-term points (older than the window or not), kept in object storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub long_term: Vec<LongTermPoint>,
}

/// One long-term point of one disk: open it as `seq:N` (or any time or seq from it until the
/// next kept point, once the journal no longer holds them).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LongTermPoint {
    pub disk: String,
    pub seq: u64,
    pub time: String,
    pub keep_until: String,
    pub app_consistent: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}
