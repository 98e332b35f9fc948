//! `GET /v1/jobs` and `GET /v1/jobs/{id}`: the long-running operations (failovers, commit,
//! reverse replication, adoption), each answered at once with its [`JobInfo`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::failover::{DiskSet, Promotion, Reverse};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// How many steps a job keeps in [`JobInfo::steps`].
pub const STEPS_KEPT: usize = 64;

/// One step of a job: its number (from 1), the percent done when it began, what it does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStep {
    pub n: u64,
    pub percent: f64,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    /// What it does: `failover-test`, `failover-planned`, `commit`, ...
    pub kind: String,
    pub group: String,
    pub state: JobState,
    pub percent: f64,
    /// The step it is on (or ended with).
    pub message: String,
    /// The steps so far, oldest first (the last [`STEPS_KEPT`]): a follower polling the job
    /// prints the ones it did not see, however fast they went by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<JobStep>,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// Set once the job succeeded.
    pub result: Option<JobResult>,
    pub error: Option<String>,
}

/// What a job leaves in place. Each operation fills the fields it is about and the others are
/// not sent: a test failover its `test` disks, a promotion its `promotion` (and `warnings`),
/// a cleanup the `cleaned` disks, reverse replication its `reverse` agent and `devices` (or
/// the `stopped` agent), an adoption what it `adopted`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The `NAME=PATH` disks an adoption copied into the new group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<Vec<String>>,
    /// The seq of the live disks an adoption (`--from-live`) made the new base of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_live_seq: Option<u64>,
    /// The test disks a cleanup discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned: Option<DiskSet>,
    /// The protected devices reverse replication made (the workload boots from them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<PathBuf>>,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse: Option<Reverse>,
    /// The reverse replication that was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Reverse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<DiskSet>,
    /// A drill's record (`crate::drill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<Box<crate::drill::evidence::DrillRecord>>,
    /// What an online verify found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<super::verify::VerifyResult>,
    /// What the operator should know about the live disks (e.g. no loop devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

impl JobResult {
    /// A result about `group` with nothing else set yet.
    pub fn of(group: impl Into<String>) -> JobResult {
        JobResult {
            group: group.into(),
            ..JobResult::default()
        }
    }
}
