//! Recovery plans drive the failover operations through [`PlanOps`]: a machine's protection
//! group is prepared by the same jobs the CLI starts (test failover, planned or unplanned
//! failover), without the group's own boot command (the plan boots its machines itself).

use std::sync::Arc;

use anyhow::{bail, Result};

use super::Failovers;
use crate::jobs::{JobInfo, JobResult, JobState};
use crate::plan::{Mode, PlanOps, PreparedDisk};

/// The plan's view of this daemon's failovers.
pub struct FailoverPlanOps(pub Arc<Failovers>);

impl Failovers {
    /// Wait for a job to end; its result, or its error.
    pub fn wait_job(&self, job: &JobInfo) -> Result<Option<JobResult>> {
        let Some(j) = self.jobs.wait(job.id) else {
            bail!("job {} vanished", job.id);
        };
        match j.state {
            JobState::Failed => bail!(
                "{} of group {}: {}",
                j.kind,
                j.group,
                j.error.unwrap_or_default()
            ),
            _ => Ok(j.result),
        }
    }
}

impl PlanOps for FailoverPlanOps {
    fn prepare(&self, group: &str, mode: Mode, point: Option<&str>) -> Result<Vec<PreparedDisk>> {
        let f = &self.0;
        let job = match mode {
            Mode::Test => f.test(group, point.map(str::to_string), false)?,
            Mode::Planned => f.planned(group, false)?,
            Mode::Unplanned => f.unplanned(group, point.unwrap_or("latest"), false)?,
        };
        f.wait_job(&job)?;
        // The job recorded its disks before it succeeded (one job per group at a time).
        let s = f.get(group);
        let set = match mode {
            Mode::Test => s.test,
            Mode::Planned | Mode::Unplanned => s.promotion.map(|p| p.set),
        }
        .ok_or_else(|| anyhow::anyhow!("the failover of group {group} recorded no disks"))?;
        if set.disks.iter().any(|d| d.nbd_uri.is_none()) {
            bail!("this rewind-mtd serves no NBD: {{nbd:...}} cannot be filled");
        }
        Ok(set.disks.iter().map(super::boot::prepared).collect())
    }

    fn cleanup(&self, group: &str, mode: Mode) -> Result<()> {
        if mode != Mode::Test {
            return Ok(());
        }
        let f = &self.0;
        if f.get(group).test.is_none() {
            return Ok(());
        }
        let job = f.cleanup(group)?;
        f.wait_job(&job).map(|_| ())
    }

    fn disks(&self, group: &str) -> Result<Vec<String>> {
        Ok(self.0.store().group(group)?.disk_names())
    }
}
