//! Site-wide operations: failover, test failover, commit and recovery plans run from the site as
//! site jobs that drive the owning master targets' control APIs.
//!
//! - [`call`]: a target's control API, its refusals passed on with their status.
//! - [`mirror`]: a target job followed into a site job (progress, `job.progress` events).
//! - [`reverse`]: after a planned failover, reverse replication towards the group's origin.
//! - [`plan`]: a recovery plan whose boot groups span targets, run segment by segment.

pub mod call;
pub mod mirror;
pub mod plan;
pub mod reverse;
