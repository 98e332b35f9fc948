//! Each group's figures as the console shows them, from the site's inventory in a handful of
//! queries (the overview must stay fast with thousands of groups): state, the RPO bound the site
//! knows (see [`crate::alerts::conditions`]: the agent's own while its report is fresh, else the
//! bound of how long nothing fed the group, the larger when both are known) against its
//! policy's target, the journal.

use std::collections::HashMap;

use crate::alerts::conditions::{unfed_since, GroupFacts, TargetFacts, REPORT_FRESH_MS};
use crate::db::policies::effective;
use crate::db::targets::AgentBytes;
use crate::db::Db;
use crate::error::ApiError;

/// One group's row.
#[derive(Clone, Debug)]
pub struct GroupRow {
    pub name: String,
    pub target: String,
    /// `ok`, `syncing`, or `unknown` (its target is not up).
    pub state: String,
    pub policy: String,
    /// The RPO in milliseconds (0: caught up, or fed now with no report of the agent's).
    pub rpo_ms: i64,
    /// Whether `rpo_ms` is what the agent measured (else the site's bound).
    pub rpo_measured: bool,
    /// The agent's last reported mode ("" none): streaming, bitmap, initial-sync, resync.
    pub agent_mode: String,
    /// The policy's RPO target in milliseconds (0: no policy).
    pub rpo_target_ms: i64,
    pub journal_bytes: i64,
    pub durable_seq: i64,
    pub retention: String,
    /// 1 connected, 0 not, -1 never seen.
    pub agent_connected: i64,
    pub disks: i64,
    /// The agent's byte counters as last reported (-1 each: unknown).
    pub agent_bytes: AgentBytes,
}

impl GroupRow {
    /// RPO over its target (1.0 = at the target); 0 without a target.
    pub fn rpo_ratio(&self) -> f64 {
        if self.rpo_target_ms > 0 {
            self.rpo_ms as f64 / self.rpo_target_ms as f64
        } else {
            0.0
        }
    }

    /// `good`, `warn` (over 0.75x its target), `bad` (over 1x, or its target is down).
    pub fn health(&self) -> &'static str {
        let r = self.rpo_ratio();
        if r > 1.0 || self.state == "unknown" {
            "bad"
        } else if r > 0.75 || self.state == "syncing" {
            "warn"
        } else {
            "good"
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    target: String,
    state: String,
    journal_bytes: i64,
    durable_seq: i64,
    retention: String,
    agent_connected: i64,
    agent_seen_ms: i64,
    agent_mode: String,
    agent_rpo_ms: i64,
    agent_report_ms: i64,
    agent_captured_bytes: i64,
    agent_sent_bytes: i64,
    agent_wire_bytes: i64,
}

/// Every group the inventory holds (optionally one), sorted by name.
pub async fn groups(db: &Db, now: i64, only: Option<&str>) -> Result<Vec<GroupRow>, ApiError> {
    let targets: HashMap<String, TargetFacts> = db
        .targets()
        .await?
        .into_iter()
        .map(|t| {
            let f = TargetFacts {
                name: t.name.clone(),
                state: t.state,
                reason: t.reason,
                last_seen_ms: t.last_seen_ms,
                free_bytes: t.free_bytes,
                capacity_bytes: t.capacity_bytes,
            };
            (t.name, f)
        })
        .collect();
    let rpo: HashMap<String, u64> = db
        .policies()
        .await?
        .into_iter()
        .map(|p| (p.name, p.rpo_target_secs))
        .collect();
    let assignments = db.assignments().await?;
    let labels = db.labels().await?;
    let sql = "SELECT name, target, state, journal_bytes, durable_seq, retention, \
               agent_connected, agent_seen_ms, agent_mode, agent_rpo_ms, agent_report_ms, \
               agent_captured_bytes, agent_sent_bytes, agent_wire_bytes FROM groups";
    let rows: Vec<Row> = match only {
        Some(g) => {
            sqlx::query_as::<_, Row>(&format!("{sql} WHERE name = $1"))
                .bind(g)
                .fetch_all(&db.pool)
                .await?
        }
        None => {
            sqlx::query_as::<_, Row>(&format!("{sql} ORDER BY name"))
                .fetch_all(&db.pool)
                .await?
        }
    };
    let disk_counts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT group_name, COUNT(*) FROM disks GROUP BY group_name",
    )
    .fetch_all(&db.pool)
    .await?
    .into_iter()
    .collect();
    let none = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let t = targets.get(&r.target);
        let name = r.name;
        let policy = effective(&name, labels.get(&name).unwrap_or(&none), &assignments)
            .unwrap_or_default()
            .to_string();
        let facts = GroupFacts {
            name: name.clone(),
            target: r.target.clone(),
            state: r.state.clone(),
            agent_connected: r.agent_connected,
            agent_seen_ms: r.agent_seen_ms,
            ..GroupFacts::default()
        };
        let up = t.is_some_and(|t| t.state == "up");
        // As the alerts reckon it: the agent's RPO while its report is fresh and it feeds the
        // group through a target that is up; the bound otherwise; the larger of the two.
        let fresh = !r.agent_mode.is_empty()
            && r.agent_report_ms > 0
            && now - r.agent_report_ms < REPORT_FRESH_MS;
        let measured = (up && fresh && r.agent_connected == 1 && r.agent_rpo_ms >= 0)
            .then_some(r.agent_rpo_ms);
        let bound = unfed_since(&facts, t).map(|since| (now - since).max(0));
        let (rpo_ms, rpo_measured) = match (measured, bound) {
            (Some(m), Some(b)) if b > m => (b, false),
            (Some(m), _) => (m, true),
            (None, b) => (b.unwrap_or(0), false),
        };
        out.push(GroupRow {
            disks: disk_counts.get(&name).copied().unwrap_or(0),
            rpo_target_ms: rpo.get(&policy).map_or(0, |s| *s as i64 * 1000),
            state: if up { r.state } else { "unknown".into() },
            name,
            target: r.target,
            policy,
            rpo_ms,
            rpo_measured,
            agent_mode: r.agent_mode,
            journal_bytes: r.journal_bytes,
            durable_seq: r.durable_seq,
            retention: r.retention,
            agent_connected: r.agent_connected,
            agent_bytes: AgentBytes {
                captured: r.agent_captured_bytes,
                sent: r.agent_sent_bytes,
                wire: r.agent_wire_bytes,
            },
        });
    }
    Ok(out)
}
