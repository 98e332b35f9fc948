//! Test failover: writable copies of one point of every disk of a group, exported and attached,
//! and the group's boot command started on them. Replication into the group goes on meanwhile
//! (the overlays are over a frozen point). Cleanup discards all of it.

use std::sync::Arc;

use anyhow::Result;

use super::disks::{self, SetKind};
use super::state::DiskSet;
use super::{boot, FailoverError, Failovers};
use crate::jobs::{Job, JobInfo, JobResult};
use crate::refused::Refused;

impl Failovers {
    /// Start a test failover of `group` at `point` (default: latest); `run_boot`: start the
    /// group's configured boot command (a recovery plan boots its machines itself).
    pub fn test(
        self: &Arc<Self>,
        group: &str,
        point: Option<String>,
        run_boot: bool,
    ) -> Result<JobInfo, FailoverError> {
        self.check_group(group)?;
        let s = self.get(group);
        if let Some(t) = &s.test {
            return Err(Refused::Conflict(format!(
                "group {group} already has a test failover (at seq {}, point {}); `rewind failover cleanup {group}` first",
                t.seq, t.point
            ))
            .into());
        }
        if let Some(p) = &s.promotion {
            return Err(Refused::Conflict(format!(
                "group {group} is promoted here ({:?} failover at seq {}): test its live disks instead",
                p.kind, p.set.seq
            ))
            .into());
        }
        let point = point.unwrap_or_else(|| "latest".into());
        let seq = self.resolve(group, &point)?;
        let me = self.clone();
        let g = group.to_string();
        Ok(self.jobs.spawn("failover-test", group, move |job| {
            let r = me.run_test(&g, &point, seq, run_boot, job);
            me.drills.record(&g, r.is_ok());
            r
        })?)
    }

    fn run_test(
        &self,
        group: &str,
        point: &str,
        seq: u64,
        run_boot: bool,
        job: &Job,
    ) -> Result<JobResult> {
        let mut set = disks::make_set(self, group, SetKind::Test, point, seq, job, (0.0, 80.0))?;
        let booted = if run_boot {
            self.start_boot(group, "test", &mut set, job)
        } else {
            Ok(())
        };
        if let Err(e) = booted {
            disks::drop_disks(self, &set.disks);
            return Err(e);
        }
        let mut s = self.get(group);
        s.test = Some(set.clone());
        if let Err(e) = self.put(s) {
            self.stop_boot(&set);
            disks::drop_disks(self, &set.disks);
            return Err(e);
        }
        Ok(JobResult {
            test: Some(set),
            ..JobResult::of(group)
        })
    }

    /// Run the group's configured boot command on a set of disks, if there is one.
    pub(super) fn start_boot(
        &self,
        group: &str,
        what: &str,
        set: &mut DiskSet,
        job: &Job,
    ) -> Result<()> {
        let Some(cfg) = self.get(group).boot else {
            return Ok(());
        };
        job.progress(90.0, "starting the boot command");
        let cmd = boot::substitute(&cfg.command, group, &set.disks)?;
        set.boot = Some(self.boots.start(&cmd, &self.boot_log(group, what))?);
        Ok(())
    }

    pub(super) fn stop_boot(&self, set: &DiskSet) {
        if let Some(b) = &set.boot {
            self.boots.stop(b.pid);
        }
    }

    /// Discard a test failover: stop its boot command, detach and delete its disks.
    pub fn cleanup(self: &Arc<Self>, group: &str) -> Result<JobInfo, FailoverError> {
        self.check_group(group)?;
        if self.get(group).test.is_none() {
            return Err(Refused::Conflict(format!(
                "group {group} has no test failover to clean up"
            ))
            .into());
        }
        let me = self.clone();
        let g = group.to_string();
        Ok(self.jobs.spawn("failover-cleanup", group, move |job| {
            let mut s = me.get(&g);
            let Some(set) = s.test.take() else {
                return Ok(JobResult::of(g));
            };
            job.progress(10.0, "stopping the boot command");
            me.stop_boot(&set);
            job.progress(40.0, "detaching and deleting the test disks");
            disks::drop_disks(&me, &set.disks);
            me.put(s)?;
            Ok(JobResult {
                cleaned: Some(set),
                ..JobResult::of(g)
            })
        })?)
    }
}
