//! `GET /v1/groups` (the `inspect` report), `POST /v1/groups/{group}/retention` and
//! `DELETE /v1/groups/{group}` (answered with [`super::Deleted`]).

use serde::{Deserialize, Serialize};

pub use crate::views::inspect::{DiskReport, GroupReport, Report, SegmentReport};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRequest {
    /// A duration: `24h`, `30m`, `7days`.
    pub retention: String,
}

/// The retention window now in force, as the daemon prints durations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReply {
    pub group: String,
    pub retention: String,
}
