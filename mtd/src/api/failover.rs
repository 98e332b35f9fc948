//! The failover routes: `GET /v1/failover` (every group's [`GroupFailover`]),
//! `GET /v1/groups/{group}/failover` ([`FailoverShow`]), `POST .../failover/configure`
//! ([`ConfigureRequest`], answered with the group's [`GroupFailover`]), and the operations that
//! start jobs (see [`super::jobs`]): test, cleanup, planned, unplanned, change-point, commit
//! ([`PointRequest`] where they take a point), reverse ([`ReverseRequest`]) and adopt
//! ([`AdoptRequest`]).

use rewind_formats::agent_status::Status;
use serde::{Deserialize, Serialize};

pub use crate::failover::adopt::AdoptRequest;
pub use crate::failover::reverse::ReverseRequest;
pub use crate::failover::state::{
    BootConfig, BootProcess, DiskSet, FailoverDisk, GroupFailover, Promotion, PromotionKind,
    Reverse,
};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRequest {
    #[serde(default)]
    pub point: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigureRequest {
    /// The boot command (placeholders `{nbd:DISK}`, `{loop:DISK}`, `{group}`); empty clears it.
    pub boot: Option<String>,
}

/// One group's failover state and, under reverse replication, its agent's status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailoverShow {
    /// The reverse agent's own `status.json`, in the shape the agent writes it (the type is
    /// the formats crate's, shared with the agent).
    pub reverse_status: Option<Status>,
    pub state: GroupFailover,
}
