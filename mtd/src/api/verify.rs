//! `POST /v1/groups/{group}/verify`: an online verify of the group's replica against its
//! source disks, run as a job (see `crate::verify`); its [`VerifyResult`] is the job's result.

use serde::{Deserialize, Serialize};

/// The request body (every field optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The point to compare at first (`latest`, `seq:N`, `tag:NAME`, a time); regions written
    /// after it are compared at a later point. None: the newest acknowledged seq.
    #[serde(default)]
    pub point: Option<String>,
    /// Resend the differing ranges (a resync of their regions, inside a resync window).
    #[serde(default)]
    pub repair: bool,
    /// How long regions the workload keeps writing are retried before they are reported as not
    /// compared (default 600, at most a day).
    #[serde(default)]
    pub deadline_secs: Option<u64>,
}

/// One range where the replica differs from the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyDiff {
    pub disk: String,
    pub offset: u64,
    pub len: u64,
    /// The seq the range was compared at (the replica's state there was compared).
    pub seq: u64,
    /// When, ms since 1970 (the agent's clock).
    pub time_ms: u64,
}

/// What a verify found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    /// The seq `--point` resolved to, if one was given.
    pub point_seq: Option<u64>,
    pub total_bytes: u64,
    pub compared_bytes: u64,
    /// Bytes the workload kept writing until the deadline: not compared.
    pub not_compared_bytes: u64,
    /// Bytes the workload wrote after the first seq they could be compared at: compared at a
    /// later point.
    pub recompared_bytes: u64,
    /// The sum of the differing ranges' lengths.
    pub mismatched_bytes: u64,
    pub ranges: Vec<VerifyDiff>,
    /// The ranges were resent and the target acknowledged them (`repair`).
    pub repaired: bool,
}
