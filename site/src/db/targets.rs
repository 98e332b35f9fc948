//! Master targets: where each one's control API is, whether it answers, and what it holds.

use serde::{Deserialize, Serialize};

use super::{int, now_ms, text, Db};
use crate::error::ApiError;

/// A master target as the site last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub url: String,
    /// Where agents connect (`HOST:PORT`, TLS), "" if not given.
    pub agent_addr: String,
    /// `up`, `down` (with `reason`) or `unknown` (not polled yet).
    pub state: String,
    pub reason: String,
    /// The target's version as it reports it ("" until known).
    pub version: String,
    /// Bytes its groups' journals use.
    pub journal_bytes: i64,
    /// Bytes free on its data filesystem (-1: the target does not report it).
    pub free_bytes: i64,
    /// Size of its data file system (-1: not reported).
    #[serde(default)]
    pub capacity_bytes: i64,
    pub last_seen_ms: i64,
    pub added_ms: i64,
}

/// What one poll of a target found.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub version: String,
    pub free_bytes: i64,
    /// Size of its data file system (-1: not reported).
    pub capacity_bytes: i64,
    pub groups: Vec<SeenGroup>,
    pub agents: Vec<SeenAgent>,
}

#[derive(Clone, Debug, Default)]
pub struct SeenGroup {
    pub name: String,
    pub state: String,
    pub generation: i64,
    pub durable_seq: i64,
    pub journal_bytes: i64,
    pub retention: String,
    pub running_policy: String,
    pub running_version: i64,
    pub disks: Vec<(String, i64)>,
    /// 1: its agent is connected; 0: it was and is not; -1: the target has not seen one.
    pub agent_connected: i64,
    /// When the agent was last connected (now while it is), ms since the epoch; 0: never.
    pub agent_seen_ms: i64,
    /// What the agent last reported to the target (None: nothing, or an agent too old to).
    pub report: Option<SeenReport>,
    /// The group's last drill as the target reports it (None: no drill, or a target too old).
    pub drill: Option<SeenDrill>,
    /// The group's last online verify as the target reports it (None: none, or a target too
    /// old to say).
    pub verify: Option<SeenVerify>,
}

/// A group's last online verify (`GET /v1/groups`, `verify`: the target's `LastVerify`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenVerify {
    pub job: i64,
    pub ended_ms: i64,
    /// Bytes found differing and not repaired (0: none, or repaired).
    pub differs_bytes: i64,
    pub ranges: i64,
}

/// A group's last drill (`GET /v1/groups`, `drill`: the target's `DrillBrief`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenDrill {
    /// 1 passed, 0 failed, -1 none.
    pub last_ok: i64,
    pub last_ms: i64,
    /// When the last passing drill ended (0: none), and the seq it proved (-1: none).
    pub ok_ms: i64,
    pub verified_seq: i64,
    pub every_secs: i64,
    pub summary: String,
}

/// A group's agent report, as the target relays it (`formats/src/agent_report.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeenReport {
    /// `streaming`, `bitmap`, `initial-sync` or `resync`.
    pub mode: String,
    pub rpo_ms: i64,
    /// When the agent made it (its clock, ms since 1970).
    pub at_ms: i64,
    /// The running sync's progress in tenths of a percent; -1: none runs.
    pub sync_permille: i64,
    pub bytes: AgentBytes,
}

/// What an agent reported it captured, handed to its sender (before compression) and put on
/// the link since it started; -1 each: its report did not say (an older agent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentBytes {
    pub captured: i64,
    pub sent: i64,
    pub wire: i64,
}

impl Default for AgentBytes {
    fn default() -> Self {
        AgentBytes {
            captured: -1,
            sent: -1,
            wire: -1,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SeenAgent {
    pub name: String,
    pub group: String,
    pub version: String,
    pub host: String,
}

fn row_target(r: &sqlx::any::AnyRow) -> Result<Target, ApiError> {
    Ok(Target {
        name: text(r, "name")?,
        url: text(r, "url")?,
        agent_addr: text(r, "agent_addr")?,
        state: text(r, "state")?,
        reason: text(r, "reason")?,
        version: text(r, "version")?,
        journal_bytes: int(r, "journal_bytes")?,
        free_bytes: int(r, "free_bytes")?,
        capacity_bytes: int(r, "capacity_bytes")?,
        last_seen_ms: int(r, "last_seen_ms")?,
        added_ms: int(r, "added_ms")?,
    })
}

const COLS: &str =
    "name, url, agent_addr, state, reason, version, journal_bytes, free_bytes, capacity_bytes, \
     last_seen_ms, added_ms";

impl Db {
    pub async fn add_target(
        &self,
        name: &str,
        url: &str,
        agent_addr: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO targets (name, url, agent_addr, state, reason, version, journal_bytes, \
             free_bytes, last_seen_ms, added_ms) \
             VALUES ($1, $2, $4, 'unknown', 'not polled yet', '', 0, -1, 0, $3)",
        )
        .bind(name)
        .bind(url)
        .bind(now_ms())
        .bind(agent_addr)
        .execute(&self.pool)
        .await
        .map_err(|e| ApiError::from_insert(e, format!("target {name} is already registered")))?;
        Ok(())
    }

    /// Remove a target and what the site knew of its groups (the groups' labels stay: a group
    /// that reappears on another target keeps them).
    pub async fn remove_target(&self, name: &str) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM targets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ApiError::not_found(format!(
                "no target {name} (see `rewind-site target list`)"
            )));
        }
        sqlx::query(
            "DELETE FROM disks WHERE group_name IN (SELECT name FROM groups WHERE target = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM groups WHERE target = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM agents WHERE target = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn targets(&self) -> Result<Vec<Target>, ApiError> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM targets ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_target).collect()
    }

    pub async fn target(&self, name: &str) -> Result<Target, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM targets WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => row_target(&r),
            None => Err(ApiError::not_found(format!(
                "no target {name} (see `rewind-site target list`)"
            ))),
        }
    }

    /// Mark a target down with the reason, and its groups `unknown`. Returns whether it was
    /// not down already (an event worth logging).
    pub async fn mark_down(&self, name: &str, reason: &str) -> Result<bool, ApiError> {
        let mut tx = self.begin().await?;
        let was: Option<(String,)> = sqlx::query_as("SELECT state FROM targets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("UPDATE targets SET state = 'down', reason = $2 WHERE name = $1")
            .bind(name)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE groups SET state = 'unknown' WHERE target = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(was.is_some_and(|(s,)| s != "down"))
    }

    /// Record a successful poll: the target up, its groups, disks and agents as seen (groups it
    /// no longer has are forgotten). Returns whether it was not up before.
    pub async fn record_seen(&self, name: &str, seen: &Seen) -> Result<bool, ApiError> {
        let now = now_ms();
        let journal: i64 = seen.groups.iter().map(|g| g.journal_bytes).sum();
        let mut tx = self.begin().await?;
        let was: Option<(String,)> = sqlx::query_as("SELECT state FROM targets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if was.is_none() {
            // Removed while the poll ran.
            return Ok(false);
        }
        sqlx::query(
            "UPDATE targets SET state = 'up', reason = '', version = $2, journal_bytes = $3, \
             free_bytes = $4, last_seen_ms = $5, capacity_bytes = $6 WHERE name = $1",
        )
        .bind(name)
        .bind(&seen.version)
        .bind(journal)
        .bind(seen.free_bytes)
        .bind(now)
        .bind(seen.capacity_bytes)
        .execute(&mut *tx)
        .await?;
        // A restarted target has not seen any agent yet: what the site knew before stands (the
        // agent last connected then), so the RPO bound and `agent_not_seen` go on from there.
        let before: std::collections::HashMap<String, (i64, i64, i64)> = sqlx::query_as(
            "SELECT name, agent_connected, agent_seen_ms, seen_ms FROM groups WHERE target = $1",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(n, c, a, s): (String, i64, i64, i64)| (n, (c, a, s)))
        .collect();
        // The agents' reports as known before, so a restarted target (which has none yet) does
        // not erase them, and a sync's last progress is carried from poll to poll.
        let reports_before: std::collections::HashMap<String, KeptReport> = sqlx::query_as(
            "SELECT name, agent_mode, agent_rpo_ms, agent_report_ms, agent_sync_permille, \
             agent_progress_ms, agent_captured_bytes, agent_sent_bytes, agent_wire_bytes \
             FROM groups WHERE target = $1",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(
            |(n, mode, rpo_ms, at_ms, permille, progress_ms, captured, sent, wire)| {
                let bytes = AgentBytes {
                    captured,
                    sent,
                    wire,
                };
                (
                    n,
                    KeptReport {
                        mode,
                        rpo_ms,
                        at_ms,
                        permille,
                        progress_ms,
                        bytes,
                    },
                )
            },
        )
        .collect();
        sqlx::query(
            "DELETE FROM disks WHERE group_name IN (SELECT name FROM groups WHERE target = $1)",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM groups WHERE target = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for g in &seen.groups {
            let (agent_connected, agent_seen_ms) = match before.get(&g.name) {
                Some(&(1, _, seen_ms)) if g.agent_connected == -1 => (0, seen_ms),
                Some(&(0, at, _)) if g.agent_connected == -1 => (0, at),
                _ => (g.agent_connected, g.agent_seen_ms),
            };
            let kept = KeptReport::next(reports_before.get(&g.name), g.report.as_ref(), now);
            // A group of the same name on another target keeps its row: names are site-wide,
            // the first target that reported it owns it.
            let r = sqlx::query(
                "INSERT INTO groups (name, target, state, generation, durable_seq, journal_bytes, \
                 retention, running_policy, running_version, seen_ms, agent_connected, \
                 agent_seen_ms, agent_mode, agent_rpo_ms, agent_report_ms, \
                 agent_sync_permille, agent_progress_ms, agent_captured_bytes, agent_sent_bytes, \
                 agent_wire_bytes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&g.name)
            .bind(name)
            .bind(&g.state)
            .bind(g.generation)
            .bind(g.durable_seq)
            .bind(g.journal_bytes)
            .bind(&g.retention)
            .bind(&g.running_policy)
            .bind(g.running_version)
            .bind(now)
            .bind(agent_connected)
            .bind(agent_seen_ms)
            .bind(&kept.mode)
            .bind(kept.rpo_ms)
            .bind(kept.at_ms)
            .bind(kept.permille)
            .bind(kept.progress_ms)
            .bind(kept.bytes.captured)
            .bind(kept.bytes.sent)
            .bind(kept.bytes.wire)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                tracing::warn!(target = name, group = %g.name, "group name already seen on another target; ignored");
                continue;
            }
            if let Some(d) = &g.drill {
                sqlx::query(
                    "UPDATE groups SET drill_last_ok = $2, drill_last_ms = $3, drill_ok_ms = $4, \
                     drill_verified_seq = $5, drill_every_secs = $6, drill_summary = $7 \
                     WHERE name = $1",
                )
                .bind(&g.name)
                .bind(d.last_ok)
                .bind(d.last_ms)
                .bind(d.ok_ms)
                .bind(d.verified_seq)
                .bind(d.every_secs)
                .bind(&d.summary)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(v) = &g.verify {
                sqlx::query(
                    "UPDATE groups SET verify_ms = $2, verify_job = $3, \
                     verify_differs_bytes = $4, verify_ranges = $5 WHERE name = $1",
                )
                .bind(&g.name)
                .bind(v.ended_ms)
                .bind(v.job)
                .bind(v.differs_bytes)
                .bind(v.ranges)
                .execute(&mut *tx)
                .await?;
            }
            for (disk, size) in &g.disks {
                sqlx::query("INSERT INTO disks (group_name, name, size_bytes) VALUES ($1, $2, $3)")
                    .bind(&g.name)
                    .bind(disk)
                    .bind(*size)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for a in &seen.agents {
            sqlx::query(
                "INSERT INTO agents (name, target, group_name, version, host, last_seen_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
                 target = excluded.target, group_name = excluded.group_name, \
                 version = excluded.version, host = excluded.host, \
                 last_seen_ms = excluded.last_seen_ms",
            )
            .bind(&a.name)
            .bind(name)
            .bind(&a.group)
            .bind(&a.version)
            .bind(&a.host)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(was.is_some_and(|(s,)| s != "up"))
    }
}

/// A group's agent report as the site keeps it, with since when its sync last moved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeptReport {
    pub mode: String,
    pub rpo_ms: i64,
    pub at_ms: i64,
    pub permille: i64,
    pub progress_ms: i64,
    pub bytes: AgentBytes,
}

impl KeptReport {
    /// What to keep after a poll at `now`: the new report if the target has one (else the one
    /// kept before), and since when the sync moves: reset when a sync starts or gains ground,
    /// kept while it stands still.
    pub fn next(before: Option<&KeptReport>, seen: Option<&SeenReport>, now: i64) -> KeptReport {
        let Some(r) = seen else {
            return before.cloned().unwrap_or(KeptReport {
                rpo_ms: -1,
                permille: -1,
                ..KeptReport::default()
            });
        };
        let syncing = r.sync_permille >= 0;
        let progress_ms = match before {
            Some(b) if syncing && b.permille >= 0 && r.sync_permille <= b.permille => b.progress_ms,
            _ if syncing => now,
            _ => 0,
        };
        KeptReport {
            mode: r.mode.clone(),
            rpo_ms: r.rpo_ms,
            at_ms: r.at_ms,
            permille: r.sync_permille,
            progress_ms,
            bytes: r.bytes,
        }
    }
}

/// An agent as the targets reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub name: String,
    pub target: String,
    pub group: String,
    pub version: String,
    pub host: String,
    pub last_seen_ms: i64,
}

impl Db {
    pub async fn agents(&self) -> Result<Vec<AgentView>, ApiError> {
        let rows = sqlx::query(
            "SELECT name, target, group_name, version, host, last_seen_ms FROM agents ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentView {
                    name: text(r, "name")?,
                    target: text(r, "target")?,
                    group: text(r, "group_name")?,
                    version: text(r, "version")?,
                    host: text(r, "host")?,
                    last_seen_ms: int(r, "last_seen_ms")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(mode: &str, permille: i64) -> SeenReport {
        SeenReport {
            mode: mode.into(),
            rpo_ms: 0,
            at_ms: 1,
            sync_permille: permille,
            bytes: AgentBytes::default(),
        }
    }

    #[test]
    fn a_sync_is_moving_while_its_progress_grows() {
        // A sync starts: progress now.
        let a = KeptReport::next(None, Some(&seen("resync", 10)), 1_000);
        assert_eq!((a.permille, a.progress_ms), (10, 1_000));
        // It gains ground: progress moves to now.
        let b = KeptReport::next(Some(&a), Some(&seen("resync", 20)), 2_000);
        assert_eq!(b.progress_ms, 2_000);
        // It stands still: since when is kept.
        let c = KeptReport::next(Some(&b), Some(&seen("resync", 20)), 9_000);
        assert_eq!(c.progress_ms, 2_000);
        // Done: no sync, no progress time.
        let d = KeptReport::next(Some(&c), Some(&seen("streaming", -1)), 10_000);
        assert_eq!((d.permille, d.progress_ms), (-1, 0));
        // A target without a report (restarted) keeps what was known.
        assert_eq!(KeptReport::next(Some(&c), None, 11_000), c);
        let none = KeptReport::next(None, None, 11_000);
        assert_eq!(
            (none.mode.as_str(), none.rpo_ms, none.permille),
            ("", -1, -1)
        );
    }
}
