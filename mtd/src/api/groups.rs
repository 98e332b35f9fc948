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

/// Who fed a group, for the inventory (`GET /v1/groups`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSeen {
    pub agent: String,
    /// The peer address (`IP:PORT`) or `unix` of its session.
    pub host: String,
    /// The agent's software version from its HELLO; None from an agent too old to say
    /// (frame version 1).
    #[serde(default)]
    pub version: Option<String>,
    /// What the agent last reported of the group (bitmap mode, sync, RPO at the source, spool);
    /// None from an agent too old to report.
    #[serde(default)]
    pub report: Option<rewind_formats::agent_report::AgentReport>,
    pub connected: bool,
    /// Now while connected; when its session ended otherwise (milliseconds since 1970).
    pub last_seen_ms: u64,
}
