//! Each group's figures as the console shows them, from the site's inventory in a handful of
//! queries (the overview must stay fast with thousands of groups): state, the RPO bound the site
//! can vouch for (see [`crate::alerts::conditions`]) against its policy's target, the journal.

use std::collections::HashMap;

use crate::alerts::conditions::{unfed_since, GroupFacts, TargetFacts};
use crate::db::policies::effective;
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
    /// The RPO bound in milliseconds (0: fed now).
    pub rpo_ms: i64,
    /// The policy's RPO target in milliseconds (0: no policy).
    pub rpo_target_ms: i64,
    pub journal_bytes: i64,
    pub durable_seq: i64,
    pub retention: String,
    /// 1 connected, 0 not, -1 never seen.
    pub agent_connected: i64,
    pub disks: i64,
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

type Row = (String, String, String, i64, i64, String, i64, i64);

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
               agent_connected, agent_seen_ms FROM groups";
    let rows: Vec<Row> = match only {
        Some(g) => {
            sqlx::query_as(&format!("{sql} WHERE name = $1"))
                .bind(g)
                .fetch_all(&db.pool)
                .await?
        }
        None => {
            sqlx::query_as(&format!("{sql} ORDER BY name"))
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
    for (name, target, state, journal_bytes, durable_seq, retention, conn, seen) in rows {
        let t = targets.get(&target);
        let policy = effective(&name, labels.get(&name).unwrap_or(&none), &assignments)
            .unwrap_or_default()
            .to_string();
        let facts = GroupFacts {
            name: name.clone(),
            target: target.clone(),
            state: state.clone(),
            agent_connected: conn,
            agent_seen_ms: seen,
            rpo_target_secs: None,
        };
        let rpo_ms = unfed_since(&facts, t).map_or(0, |since| (now - since).max(0));
        let up = t.is_some_and(|t| t.state == "up");
        out.push(GroupRow {
            disks: disk_counts.get(&name).copied().unwrap_or(0),
            rpo_target_ms: rpo.get(&policy).map_or(0, |s| *s as i64 * 1000),
            state: if up { state } else { "unknown".into() },
            name,
            target,
            policy,
            rpo_ms,
            journal_bytes,
            durable_seq,
            retention,
            agent_connected: conn,
        });
    }
    Ok(out)
}
