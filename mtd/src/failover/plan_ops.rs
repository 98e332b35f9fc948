//! Recovery plans drive the failover operations through [`PlanOps`]: a machine's protection
//! group is prepared by the same jobs the CLI starts (test failover, planned or unplanned
//! failover), without the group's own boot command (the plan boots its machines itself).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use super::Failovers;
use crate::jobs::{JobInfo, JobState};
use crate::plan::{Mode, PlanOps, PreparedDisk};

/// The plan's view of this daemon's failovers.
pub struct FailoverPlanOps(pub Arc<Failovers>);

impl Failovers {
    /// Wait for a job to end; its result, or its error.
    pub fn wait_job(&self, job: &JobInfo) -> Result<serde_json::Value> {
        loop {
            let Some(j) = self.jobs.get(job.id) else {
                bail!("job {} vanished", job.id);
            };
            match j.state {
                JobState::Running => std::thread::sleep(Duration::from_millis(20)),
                JobState::Succeeded => return Ok(j.result.unwrap_or_default()),
                JobState::Failed => bail!(
                    "{} of group {}: {}",
                    j.kind,
                    j.group,
                    j.error.unwrap_or_default()
                ),
            }
        }
    }
}

impl PlanOps for FailoverPlanOps {
    fn prepare(&self, group: &str, mode: Mode, point: Option<&str>) -> Result<Vec<PreparedDisk>> {
        let f = &self.0;
        let (job, set) = match mode {
            Mode::Test => (f.test(group, point.map(str::to_string), false)?, "test"),
            Mode::Planned => (f.planned(group, false)?, "promotion"),
            Mode::Unplanned => (
                f.unplanned(group, point.unwrap_or("latest"), false)?,
                "promotion",
            ),
        };
        let v = f.wait_job(&job)?;
        let set = if set == "test" {
            &v["test"]
        } else {
            &v["promotion"]["set"]
        };
        let disks = set["disks"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("the failover of group {group} made no disks: {v}"))?;
        disks
            .iter()
            .map(|d| {
                Ok(PreparedDisk {
                    disk: d["disk"].as_str().unwrap_or_default().to_string(),
                    nbd_uri: d["nbd_uri"].as_str().map(str::to_string).ok_or_else(|| {
                        anyhow::anyhow!(
                            "this rewind-mtd serves no NBD: {{nbd:...}} cannot be filled"
                        )
                    })?,
                    loop_device: d["loop_device"].as_str().map(str::to_string),
                })
            })
            .collect()
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
        let g = self.0.store().group(group)?;
        let st = g.state.read().expect("group lock");
        Ok(st.manifest.disks.iter().map(|d| d.name.clone()).collect())
    }
}
