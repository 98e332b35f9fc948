//! Promotion: the group becomes live at this site. Planned failover first has the source agent
//! drain (no write is lost); unplanned failover takes a chosen point when the source is gone.
//! Either way the group's generation is bumped, which fences the old source agent, and live
//! disks (`GROUP/DISK@live`) are made over the point. Until commit another point may be chosen.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rewind_formats::Seq;

use super::disks::{self, SetKind};
use super::state::{Promotion, PromotionKind};
use super::{FailoverError, Failovers};
use crate::jobs::{Job, JobInfo, JobResult};
use crate::refused::Refused;
use crate::store::points::format_ms;
use rewind_linux::clock::now_ms;

/// The tag that marks the last seq before a planned failover.
pub const PLANNED_TAG: &str = "planned-failover";
/// How long a planned failover waits for the agent to send everything it holds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

impl Failovers {
    fn check_promotable(&self, group: &str) -> Result<(), Refused> {
        self.check_group(group)?;
        let s = self.get(group);
        if let Some(p) = &s.promotion {
            return Err(Refused::Conflict(format!(
                "group {group} is already promoted ({:?} failover at seq {}, generation {}); a second promotion is refused{}",
                p.kind,
                p.set.seq,
                p.generation,
                if p.committed {
                    ""
                } else {
                    "; `rewind failover change-point` picks another point before commit"
                }
            )));
        }
        if let Some(t) = &s.test {
            return Err(Refused::Conflict(format!(
                "group {group} has a test failover (at seq {}); `rewind failover cleanup {group}` first",
                t.seq
            )));
        }
        Ok(())
    }

    /// Planned failover: drain the agent, then promote at its `planned-failover` tag.
    pub fn planned(
        self: &Arc<Self>,
        group: &str,
        run_boot: bool,
    ) -> Result<JobInfo, FailoverError> {
        self.check_promotable(group)?;
        {
            let g = self.store().group(group)?;
            if !g.consistent() {
                return Err(Refused::Conflict(format!(
                    "group {group} is in the middle of a resync (its newest points are not recoverable); \
                     wait until `rewind points {group}` shows it consistent, then retry"
                ))
                .into());
            }
            if !crate::server::registry::connected(&g) {
                return Err(Refused::Conflict(format!(
                    "the source agent of group {group} is not connected: a planned failover needs it to drain; \
                     if the source is gone run `rewind failover unplanned {group} --point latest`"
                ))
                .into());
            }
        }
        let me = self.clone();
        let g = group.to_string();
        Ok(self.jobs.spawn("failover-planned", group, move |job| {
            me.run_planned(&g, run_boot, job)
        })?)
    }

    fn run_planned(&self, group: &str, run_boot: bool, job: &Job) -> Result<JobResult> {
        job.progress(5.0, "asking the source agent to drain");
        let drained = self.rt.block_on(crate::server::drain::drain(
            self.store(),
            group,
            PLANNED_TAG,
            DRAIN_TIMEOUT,
        ));
        let seq = match drained {
            Ok(seq) => seq,
            Err(e) => {
                // No promotion follows: the source must take writes again, now or when its
                // agent next connects.
                let g = self.store().group(group)?;
                crate::server::registry::resume_source(&g, PLANNED_TAG);
                return Err(anyhow::Error::new(e).context(format!(
                    "draining the source agent of group {group} (asked to resume writes)"
                )));
            }
        };
        job.progress(
            40.0,
            format!("drained: {PLANNED_TAG} at seq {seq} is durable"),
        );
        let reason = format!("planned failover at seq {seq}, {}", format_ms(now_ms()));
        job.progress(50.0, "fencing the source");
        let generation = self.fence(group, &reason)?;
        let point = format!("seq:{seq}");
        self.make_live(
            group,
            PromotionKind::Planned,
            (&point, seq),
            generation,
            run_boot,
            job,
        )
    }

    /// Unplanned failover to `point` (the source is gone).
    pub fn unplanned(
        self: &Arc<Self>,
        group: &str,
        point: &str,
        run_boot: bool,
    ) -> Result<JobInfo, FailoverError> {
        self.check_promotable(group)?;
        // Resolved now, so a bad point changes nothing. `latest` is resolved again once the
        // source is fenced (its last writes count); any other point stays what it named now (a
        // relative time would move, and could fail, after the fence).
        let first = self.resolve(group, point)?;
        let me = self.clone();
        let g = group.to_string();
        let point = point.to_string();
        Ok(self.jobs.spawn("failover-unplanned", group, move |job| {
            job.progress(5.0, "fencing the source");
            let reason = format!("unplanned failover to {point}, {}", format_ms(now_ms()));
            let generation = me.fence(&g, &reason)?;
            let seq = if point == "latest" {
                me.resolve(&g, &point).unwrap_or(first)
            } else {
                first
            };
            me.make_live(
                &g,
                PromotionKind::Unplanned,
                (&point, seq),
                generation,
                run_boot,
                job,
            )
        })?)
    }

    /// Bump the group's generation (the source agent is refused from now on) and wait until
    /// everything it sent before is durable.
    fn fence(&self, group: &str, reason: &str) -> Result<u64> {
        let g = self.store().group(group)?;
        let generation = g.fence(reason)?;
        self.rt.block_on(g.drained());
        Ok(generation)
    }

    /// Make the live disks of a fenced group at `(point, seq)`, and record the promotion.
    fn make_live(
        &self,
        group: &str,
        kind: PromotionKind,
        (point, seq): (&str, u64),
        generation: u64,
        run_boot: bool,
        job: &Job,
    ) -> Result<JobResult> {
        let mut set = disks::make_set(self, group, SetKind::Live, point, seq, job, (55.0, 85.0))?;
        if run_boot {
            if let Err(e) = self.start_boot(group, "live", &mut set, job) {
                // The group stays fenced: the live disks are what is wanted, only the boot
                // failed (the job's result shows no boot process).
                tracing::error!(group, error = %e, "boot command failed to start");
            }
        }
        let p = Promotion {
            kind,
            set,
            generation,
            committed: false,
        };
        let mut s = self.get(group);
        s.promotion = Some(p.clone());
        self.put(s)?;
        Ok(JobResult {
            promotion: Some(p),
            warnings: Some(self.live_warnings(group)),
            ..JobResult::of(group)
        })
    }

    /// What a promotion here cannot do, said when it happens rather than at `rewind reverse`.
    fn live_warnings(&self, group: &str) -> Vec<String> {
        if self.views.is_some() {
            return Vec::new();
        }
        let w = format!(
            "no view tree: live disks are NBD-only; reverse replication needs --views              (restart rewind-mtd serve with --views DIR before `rewind reverse {group}`)"
        );
        tracing::warn!(group, "{w}");
        vec![w]
    }

    /// Before commit: make the live disks over another point (their writes so far are dropped).
    pub fn change_point(
        self: &Arc<Self>,
        group: &str,
        point: &str,
    ) -> Result<JobInfo, FailoverError> {
        self.check_group(group)?;
        let s = self.get(group);
        let Some(p) = &s.promotion else {
            return Err(Refused::Conflict(format!(
                "group {group} is not failed over: nothing to change (`rewind failover unplanned {group} --point P`)"
            ))
            .into());
        };
        if p.committed {
            return Err(Refused::Conflict(format!(
                "group {group}'s failover to seq {} is committed: its point is permanent",
                p.set.seq
            ))
            .into());
        }
        let seq = self.resolve(group, point)?;
        disks::check_unused(self, &p.set).map_err(|e| Refused::Conflict(format!("{e:#}")))?;
        let me = self.clone();
        let g = group.to_string();
        let point = point.to_string();
        Ok(self
            .jobs
            .spawn("failover-change-point", group, move |job| {
                let mut s = me.get(&g);
                let mut p = s.promotion.take().context("promotion vanished")?;
                // Checked again here: a client may have connected since the request.
                disks::check_unused(&me, &p.set)?;
                job.progress(10.0, "dropping the live disks of the old point");
                me.stop_boot(&p.set);
                disks::drop_disks(&me, &p.set.disks);
                p.set = disks::make_set(&me, &g, SetKind::Live, &point, seq, job, (40.0, 85.0))?;
                if let Err(e) = me.start_boot(&g, "live", &mut p.set, job) {
                    tracing::error!(group = %g, error = %e, "boot command failed to start");
                }
                s.promotion = Some(p.clone());
                me.put(s)?;
                Ok(JobResult {
                    promotion: Some(p),
                    warnings: Some(me.live_warnings(&g)),
                    ..JobResult::of(g)
                })
            })?)
    }

    /// Make the promoted point permanent and discard the group's history after it.
    pub fn commit(self: &Arc<Self>, group: &str) -> Result<JobInfo, FailoverError> {
        self.check_group(group)?;
        let s = self.get(group);
        match &s.promotion {
            None => {
                return Err(Refused::Conflict(format!(
                    "group {group} has no failover to commit (`rewind failover planned|unplanned {group}` first)"
                ))
                .into())
            }
            Some(p) if p.committed => {
                return Err(Refused::Conflict(format!(
                    "group {group}'s failover to seq {} is already committed",
                    p.set.seq
                ))
                .into())
            }
            Some(_) => {}
        }
        let me = self.clone();
        let g = group.to_string();
        Ok(self.jobs.spawn("failover-commit", group, move |job| {
            let mut s = me.get(&g);
            let p = s.promotion.as_mut().context("promotion vanished")?;
            job.progress(
                20.0,
                format!("discarding the history after seq {}", p.set.seq),
            );
            me.store().group(&g)?.discard_after(Seq(p.set.seq))?;
            p.committed = true;
            let p = p.clone();
            me.put(s)?;
            Ok(JobResult {
                promotion: Some(p),
                ..JobResult::of(g)
            })
        })?)
    }
}
