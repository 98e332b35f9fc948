//! Groups as the site shows them: the inventory the poller keeps, joined with labels, the
//! policy that applies and what the target last took; and protections made by `protect`.

use serde::{Deserialize, Serialize};

use super::policies::effective;
use super::{int, now_ms, text, Db};
use crate::error::ApiError;

/// One row of `rewind-site groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub target: String,
    /// The group's state on its target; `unknown` when the target is down or not polled yet,
    /// `protected` for a protection whose agent has not connected yet.
    pub state: String,
    pub labels: Vec<(String, String)>,
    pub disks: Vec<(String, i64)>,
    pub durable_seq: i64,
    pub journal_bytes: i64,
    pub retention: String,
    /// The policy that applies ("" for none) and its current version.
    pub policy: String,
    pub policy_version: i64,
    /// The version the target runs (0: none known).
    pub running_version: i64,
    /// The target runs an older version than the policy's (or none yet).
    pub outdated: bool,
    /// Why the last push failed ("" if it did not).
    pub push_error: String,
    /// What the agent last reported (`streaming`, `bitmap`, `initial-sync`, `resync`; "" when
    /// no report is known), its RPO in ms then (-1: no report), and when it made it.
    #[serde(default)]
    pub agent_mode: String,
    #[serde(default)]
    pub agent_rpo_ms: i64,
    #[serde(default)]
    pub agent_report_ms: i64,
    /// 1: the target says the group's agent is connected; 0: it was and is not; -1: none seen
    /// (what `push-install` waits on).
    #[serde(default = "not_seen")]
    pub agent_connected: i64,
}

fn not_seen() -> i64 {
    -1
}

/// A host protected through the site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub host: String,
    pub group: String,
    pub target: String,
    pub policy: String,
    /// Where the agent's settings bundle was written.
    pub bundle: String,
    pub created_ms: i64,
}

impl Db {
    /// Every group the site knows (seen on a target, or protected and not seen yet).
    pub async fn group_views(&self) -> Result<Vec<GroupView>, ApiError> {
        let rows = sqlx::query(
            "SELECT g.name, g.target, g.state, g.durable_seq, g.journal_bytes, g.retention, \
             g.running_policy, g.running_version, g.agent_mode, g.agent_rpo_ms, \
             g.agent_report_ms, g.agent_connected, t.state AS target_state \
             FROM groups g LEFT JOIN targets t ON t.name = g.target ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let disks: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT group_name, name, size_bytes FROM disks ORDER BY group_name, name",
        )
        .fetch_all(&self.pool)
        .await?;
        let protections = self.protections().await?;
        let labels = self.labels().await?;
        let assignments = self.assignments().await?;
        let versions: std::collections::HashMap<String, i64> = self
            .policies()
            .await?
            .into_iter()
            .map(|p| (p.name, p.version as i64))
            .collect();
        let pushes = self.pushes().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let name = text(r, "name")?;
            let target_state: Option<String> = {
                use sqlx::Row;
                r.try_get("target_state")?
            };
            let state = if target_state.as_deref() == Some("up") {
                text(r, "state")?
            } else {
                "unknown".to_string()
            };
            out.push(GroupView {
                target: text(r, "target")?,
                state,
                labels: Vec::new(),
                disks: disks
                    .iter()
                    .filter(|d| d.0 == name)
                    .map(|d| (d.1.clone(), d.2))
                    .collect(),
                durable_seq: int(r, "durable_seq")?,
                journal_bytes: int(r, "journal_bytes")?,
                retention: text(r, "retention")?,
                policy: text(r, "running_policy")?,
                policy_version: 0,
                running_version: int(r, "running_version")?,
                outdated: false,
                push_error: String::new(),
                agent_mode: text(r, "agent_mode")?,
                agent_rpo_ms: int(r, "agent_rpo_ms")?,
                agent_report_ms: int(r, "agent_report_ms")?,
                agent_connected: int(r, "agent_connected")?,
                name,
            });
        }
        for p in protections {
            if !out.iter().any(|g| g.name == p.group) {
                out.push(GroupView {
                    name: p.group,
                    target: p.target,
                    state: "protected".into(),
                    labels: Vec::new(),
                    disks: Vec::new(),
                    durable_seq: 0,
                    journal_bytes: 0,
                    retention: String::new(),
                    policy: String::new(),
                    policy_version: 0,
                    running_version: 0,
                    outdated: false,
                    push_error: String::new(),
                    agent_mode: String::new(),
                    agent_rpo_ms: -1,
                    agent_report_ms: 0,
                    agent_connected: -1,
                });
            }
        }
        for g in &mut out {
            g.labels = labels.get(&g.name).cloned().unwrap_or_default();
            let running_policy = std::mem::take(&mut g.policy);
            let want = effective(&g.name, &g.labels, &assignments).map(str::to_string);
            if let Some((_, pol, ver, err, _)) = pushes.get(&g.name) {
                if err.is_empty() && g.running_version == 0 {
                    // The target took this version (it may not report policies in its
                    // inventory).
                    g.running_version = *ver;
                    if running_policy.is_empty() && Some(pol) != want.as_ref() {
                        g.running_version = 0;
                    }
                }
                g.push_error = err.clone();
            }
            if let Some(p) = want {
                g.policy_version = versions.get(&p).copied().unwrap_or(0);
                g.outdated = g.running_version < g.policy_version
                    || (!running_policy.is_empty() && running_policy != p);
                g.policy = p;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Whether the site knows a group (on a target, or protected).
    pub async fn group_known(&self, name: &str) -> Result<bool, ApiError> {
        let n: (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM groups WHERE name = $1) + \
             (SELECT COUNT(*) FROM protections WHERE group_name = $1)",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.0 > 0)
    }

    pub async fn add_protection(&self, p: &Protection) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO protections (host, group_name, target, policy, bundle, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&p.host)
        .bind(&p.group)
        .bind(&p.target)
        .bind(&p.policy)
        .bind(&p.bundle)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| ApiError::from_insert(e, format!("group {} is already protected", p.group)))?;
        Ok(())
    }

    pub async fn protections(&self) -> Result<Vec<Protection>, ApiError> {
        let rows = sqlx::query(
            "SELECT host, group_name, target, policy, bundle, created_ms FROM protections \
             ORDER BY group_name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Protection {
                    host: text(r, "host")?,
                    group: text(r, "group_name")?,
                    target: text(r, "target")?,
                    policy: text(r, "policy")?,
                    bundle: text(r, "bundle")?,
                    created_ms: int(r, "created_ms")?,
                })
            })
            .collect()
    }
}
