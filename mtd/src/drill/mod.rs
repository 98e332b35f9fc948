//! Drills: proof, by the target itself, that a group's points can be recovered. A drill makes a
//! test failover of the newest app-consistent point, boots it with the group's boot command in
//! isolation, runs the group's probes, keeps the evidence, cleans up and publishes the group's
//! **last verified point** (`rewind points`, `GET /v1/groups/{group}/drill`, `GET /v1/groups`,
//! the metrics, a `drill.done` or `drill.failed` event).
//!
//! - [`config`]: the probes and the network setting, per group
//! - [`runner`]: one drill, as a job
//! - [`probes`], [`fscheck`]: what watches the VM, and the file system check
//! - [`evidence`]: what a drill leaves in `DATA_DIR/drills/`
//! - [`schedule`]: the policy's `drill_every_secs`, run by the target itself
//!
//! A drill never disturbs replication (it reads a frozen point through overlays) nor an
//! operator's test failover: while one is up a drill is refused (409) when asked for by hand,
//! and deferred and retried when scheduled.

pub mod config;
pub mod evidence;
pub mod fscheck;
pub mod probes;
pub mod runner;
pub mod schedule;

use std::sync::Arc;

use crate::failover::{FailoverError, Failovers};
use crate::jobs::{JobInfo, JobResult};
use crate::refused::Refused;
use config::DrillConfig;
use evidence::{DrillRecord, Evidence, GroupDrills};
use runner::Ask;

/// The point a drill takes when none is named.
pub const DEFAULT_POINT: &str = "latest-app-consistent";

pub struct DrillRunner {
    pub failovers: Arc<Failovers>,
    pub evidence: Evidence,
}

impl DrillRunner {
    pub fn new(failovers: Arc<Failovers>) -> Arc<DrillRunner> {
        let evidence = Evidence::load(&failovers.store().dir);
        Arc::new(DrillRunner {
            failovers,
            evidence,
        })
    }

    /// Start a drill of `group` at `point` (default: the newest app-consistent point, else the
    /// newest point, noted in the evidence). Refused while the group has a test failover, a
    /// promotion or a running job, changing nothing.
    pub fn start(
        self: &Arc<Self>,
        group: &str,
        point: Option<String>,
        scheduled: bool,
    ) -> Result<JobInfo, FailoverError> {
        let f = &self.failovers;
        f.check_group(group)?;
        let s = f.get(group);
        if let Some(t) = &s.test {
            return Err(Refused::Conflict(format!(
                "group {group} has a test failover up (point {}, seq {}): a drill would take its \
                 test disks; `rewind failover cleanup {group}` first",
                t.point, t.seq
            ))
            .into());
        }
        if let Some(p) = &s.promotion {
            return Err(Refused::Conflict(format!(
                "group {group} is promoted here ({:?} failover at seq {}): there is no replica to drill",
                p.kind, p.set.seq
            ))
            .into());
        }
        let (point, seq, note) = match point {
            Some(p) => {
                let seq = f.resolve(group, &p)?;
                (p, seq, None)
            }
            None => match f.resolve(group, DEFAULT_POINT) {
                Ok(seq) => (DEFAULT_POINT.to_string(), seq, None),
                Err(why) => {
                    let seq = f.resolve(group, "latest")?;
                    (
                        "latest".to_string(),
                        seq,
                        Some(format!(
                            "no app-consistent point ({why}): drilled the latest crash-consistent point"
                        )),
                    )
                }
            },
        };
        let me = self.clone();
        let ask = Ask {
            group: group.to_string(),
            point,
            seq,
            note,
            scheduled,
        };
        Ok(f.jobs.spawn("drill", group, move |job| {
            let rec = me.run_job(&ask, job)?;
            if !rec.ok {
                anyhow::bail!(
                    "drill of {} failed: {} (evidence in {})",
                    rec.group,
                    rec.summary(),
                    rec.evidence.display()
                );
            }
            Ok(JobResult {
                drill: Some(Box::new(rec)),
                ..JobResult::of(&ask.group)
            })
        })?)
    }

    /// Keep the record, then tell: event and log.
    fn publish(&self, rec: &DrillRecord) {
        if let Err(e) = self.evidence.finish(rec) {
            tracing::error!(group = %rec.group, error = %e, "cannot keep the drill's evidence");
        }
        let kind = if rec.ok { "drill.done" } else { "drill.failed" };
        if rec.ok {
            tracing::info!(group = %rec.group, seq = rec.seq, "drill passed: {}", rec.summary());
        } else {
            tracing::warn!(group = %rec.group, seq = rec.seq, "drill failed: {}", rec.summary());
        }
        self.failovers.store().events.emit(
            kind,
            Some(&rec.group),
            serde_json::json!({
                "seq": rec.seq,
                "point": rec.point,
                "point_time_ms": rec.point_time_ms,
                "scheduled": rec.scheduled,
                "summary": rec.summary(),
                "evidence": rec.evidence,
            }),
        );
    }

    /// The group's last drill and verified point.
    pub fn status(&self, group: &str) -> GroupDrills {
        self.evidence.get(group)
    }

    /// Set (or, with None, clear) the group's drill configuration.
    pub fn configure(&self, group: &str, cfg: Option<DrillConfig>) -> Result<(), FailoverError> {
        if let Some(c) = &cfg {
            c.validate()
                .map_err(|e| Refused::Invalid(format!("drill config of {group}: {e}")))?;
        }
        self.failovers.set_drill(group, cfg)?;
        Ok(())
    }
}
