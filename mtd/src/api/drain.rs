//! `POST /v1/groups/{group}/drain`, `POST /v1/groups/{group}/tag` (tag now: [`TagNowRequest`],
//! answered with a [`DrainReply`] once the tag is durable) and `POST /v1/groups/{group}/fence`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRequest {
    /// The name of the Failover tag the agent puts at its last seq.
    pub tag: String,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReply {
    /// The seq of the tag: the replica there equals the source.
    pub seq: u64,
}

/// Tag now: the agent inserts a User tag named `tag` at its current seq; writes go on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagNowRequest {
    pub tag: String,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRequest {
    /// Told to the fenced agent, and to any agent of the old generation that says HELLO.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceReply {
    pub generation: u64,
}
