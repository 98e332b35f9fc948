//! Parts of the `rewind` CLI that follow jobs: failover, reverse replication, adoption (and
//! recovery plans). The simple request/answer commands live in `src/bin/rewind.rs`.

pub mod failover;
pub mod group;
pub mod job;
pub mod plan;
