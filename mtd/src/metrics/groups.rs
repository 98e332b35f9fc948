//! Per group and per disk, as the target sees them: history, state, why a group is not in
//! sync (what the target can tell), newest points, journal, applied bytes, drills.
//!
//! `rewind_rpo_seconds` is not here: the age of the oldest write the target does not hold is
//! known only where the writes are, on the agent (`docs/METRICS.md`).

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_formats::TagKind;
use rewind_linux::metrics::Family;

use super::{seconds, Parts};
use crate::failover::state::GroupFailover;
use crate::store::facts::GroupFacts;

/// The states a group can be in here (`rewind_state{state}`).
pub const STATES: [&str; 4] = ["replicating", "syncing", "agent_not_seen", "failed_over"];
/// The reasons the target can see for a group not being in sync (`rewind_sync_reason`).
pub const REASONS: [&str; 7] = [
    "initial_sync",
    "resync",
    "agent_not_seen",
    "fenced",
    "target_no_space",
    "target_no_descriptors",
    "target_failed",
];

/// The collector.
#[derive(Debug)]
pub struct Groups(pub Parts);

struct Row {
    name: String,
    facts: GroupFacts,
    failover: Option<GroupFailover>,
}

impl Row {
    fn state(&self) -> &'static str {
        let promoted = self
            .failover
            .as_ref()
            .is_some_and(|f| f.promotion.is_some());
        match (promoted, self.facts.fed, &self.facts.open_sync) {
            (true, _, _) => "failed_over",
            (false, false, _) => "agent_not_seen",
            (false, true, Some(_)) => "syncing",
            (false, true, None) => "replicating",
        }
    }

    fn has_reason(&self, reason: &str, health: &str) -> bool {
        let sync = self.facts.open_sync.as_deref();
        match reason {
            "initial_sync" => sync == Some("initial-sync"),
            "resync" => sync.is_some_and(|s| s != "initial-sync"),
            "agent_not_seen" => self.state() == "agent_not_seen",
            "fenced" => self.state() == "failed_over",
            "target_no_space" => health == "no_space",
            "target_no_descriptors" => health == "no_descriptors",
            "target_failed" => health == "failed",
            _ => false,
        }
    }
}

fn tag_kind(k: TagKind) -> Option<&'static str> {
    match k {
        TagKind::AppConsistent => Some("app_consistent"),
        TagKind::User => Some("user"),
        TagKind::Failover => Some("failover"),
        TagKind::SyncBegin | TagKind::SyncEnd => None,
    }
}

impl Collector for Groups {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let control = &self.0 .0;
        let store = &control.exports.store;
        let health = store.health.state_name();
        let mut failovers: BTreeMap<String, GroupFailover> = control
            .failovers
            .list()
            .into_iter()
            .map(|f| (f.group.clone(), f))
            .collect();
        let rows: Vec<Row> = store
            .groups()
            .into_iter()
            .map(|g| Row {
                name: g.name.clone(),
                facts: g.facts(),
                failover: failovers.remove(&g.name),
            })
            .collect();
        let now_ms = rewind_linux::clock::now_ms();
        let gauge = |enc: &mut DescriptorEncoder<'_>,
                     name: &str,
                     help: &str,
                     v: &dyn Fn(&Row) -> Option<f64>|
         -> Result<(), std::fmt::Error> {
            let mut f = Family::gauge(enc, name, help)?;
            for r in &rows {
                if let Some(v) = v(r) {
                    f.gauge_at(&[("group", &r.name)], v)?;
                }
            }
            Ok(())
        };
        gauge(
            &mut enc,
            "rewind_history_seconds",
            "How far back the group's points go: now minus the oldest point a view can open.",
            &|r| {
                let oldest = r.facts.oldest_point_ms?;
                Some(seconds(now_ms.saturating_sub(oldest)))
            },
        )?;
        gauge(
            &mut enc,
            "rewind_history_target_seconds",
            "The group's retention window: how far back its points should go.",
            &|r| Some(seconds(r.facts.retention_ms)),
        )?;
        gauge(
            &mut enc,
            "rewind_group_created_timestamp_seconds",
            "When the group was created here (history cannot be longer than its age).",
            &|r| Some(seconds(r.facts.created_ms)),
        )?;
        gauge(
            &mut enc,
            "rewind_journal_bytes",
            "Bytes of the group's journal segments (records not yet merged into the base).",
            &|r| Some(r.facts.journal_bytes as f64),
        )?;
        gauge(
            &mut enc,
            "rewind_journal_plain_bytes",
            "Plain bytes of the data records in the group's journal (before zstd encoding).",
            &|r| Some(r.facts.journal_plain_bytes as f64),
        )?;
        gauge(
            &mut enc,
            "rewind_durable_seq",
            "The group's newest durable (acknowledgeable) sequence number.",
            &|r| Some(r.facts.durable_seq as f64),
        )?;
        gauge(
            &mut enc,
            "rewind_generation",
            "The group's generation (bumped by every failover and fence).",
            &|r| Some(r.facts.generation as f64),
        )?;
        gauge(
            &mut enc,
            "rewind_agent_connected",
            "1 while an agent session feeds the group, else 0.",
            &|r| Some(f64::from(u8::from(r.facts.fed))),
        )?;
        gauge(
            &mut enc,
            "rewind_test_failover_active",
            "1 while a test failover of the group is up, else 0.",
            &|r| {
                Some(f64::from(u8::from(
                    r.failover.as_ref().is_some_and(|f| f.test.is_some()),
                )))
            },
        )?;
        let mut f = Family::gauge(
            &mut enc,
            "rewind_state",
            "1 for the group's state at the target: replicating, syncing, agent_not_seen, \
             failed_over.",
        )?;
        for r in &rows {
            let s = r.state();
            f.one_hot(&[("group", &r.name)], "state", &STATES, |c| c == s)?;
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_sync_reason",
            "1 for each reason the target sees for the group not being in sync.",
        )?;
        for r in &rows {
            f.one_hot(&[("group", &r.name)], "reason", &REASONS, |c| {
                r.has_reason(c, health)
            })?;
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_last_point_timestamp_seconds",
            "Source time of the group's newest point of each kind: crash_consistent (the \
             newest durable write), app_consistent, user, failover.",
        )?;
        for r in &rows {
            if let Some(ms) = r.facts.newest_ms {
                f.gauge_at(
                    &[("group", &r.name), ("kind", "crash_consistent")],
                    seconds(ms),
                )?;
            }
            for (k, ms) in &r.facts.last_tag_ms {
                if let Some(kind) = tag_kind(*k) {
                    f.gauge_at(&[("group", &r.name), ("kind", kind)], seconds(*ms))?;
                }
            }
        }
        let drills = control.failovers.drills.all();
        let mut f = Family::gauge(
            &mut enc,
            "rewind_last_test_failover_timestamp_seconds",
            "When the group's last test failover ended (its disks ready, or its failure).",
        )?;
        for (g, d) in &drills {
            f.gauge_at(&[("group", g)], seconds(d.timestamp_ms))?;
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_last_test_failover_success",
            "1 if the group's last test failover succeeded, 0 if it failed.",
        )?;
        for (g, d) in &drills {
            f.gauge_at(&[("group", g)], u32::from(d.ok))?;
        }
        let mut f = Family::gauge(&mut enc, "rewind_disk_size_bytes", "Size of each disk.")?;
        for r in &rows {
            for d in &r.facts.disks {
                f.gauge_at(&[("group", &r.name), ("disk", &d.name)], d.size_bytes)?;
            }
        }
        let mut f = Family::counter(
            &mut enc,
            "rewind_applied_bytes",
            "Bytes of disk data made durable in the journal since the daemon started.",
        )?;
        for r in &rows {
            for d in &r.facts.disks {
                f.counter_at(&[("group", &r.name), ("disk", &d.name)], d.applied_bytes)?;
            }
        }
        Ok(())
    }
}
