//! `PUT|GET /v1/groups/{group}/policy`: the body of a PUT is a
//! [`rewind_formats::policy::Policy`]; both answer [`PolicyReply`]. `GET /v1/groups` shows each
//! group's [`PolicySummary`].

use rewind_formats::policy::Policy;
use serde::{Deserialize, Serialize};

/// A group's policy as the target runs it, and what its agent was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReply {
    pub group: String,
    pub policy: Policy,
    /// The version last sent to the agent (none: no agent connected since it was set).
    pub delivered_version: Option<u64>,
    /// What the agent answered when it could not apply the last one sent.
    pub agent_refused: Option<String>,
}

/// The policy part of a group's line in `GET /v1/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    pub name: String,
    /// The version the target runs.
    pub version: u64,
    /// The version last sent to the agent.
    pub delivered_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_refused: Option<String>,
}
