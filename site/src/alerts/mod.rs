//! Alerts the site evaluates itself, without Prometheus: the leader gathers what polls and event
//! streams recorded, [`conditions::evaluate`]s it once a second, fires what is newly true and
//! resolves what no longer is. Firing and resolving queue the deliveries ([`crate::notify`]).

pub mod conditions;
pub mod forecast;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use conditions::{Firing, GroupFacts, Refusals, TargetFacts, REFUSAL_WINDOW_MS};

use crate::db::now_ms;
use crate::error::ApiError;
use crate::server::AppState;

/// How often the leader evaluates.
pub const EVERY: Duration = Duration::from_secs(1);

/// Run forever; idle while this instance does not lead.
pub async fn run(st: AppState) {
    // The journal forecasts' history: the leader's own, from its polls (a new leader starts
    // again).
    let mut forecasts = forecast::Forecasts::default();
    loop {
        if st.is_leader() {
            if let Err(e) = once(&st, &mut forecasts).await {
                tracing::warn!(error = %e, "evaluating alerts");
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Evaluate once: fire and resolve. Returns (fired, resolved).
pub async fn once(
    st: &AppState,
    forecasts: &mut forecast::Forecasts,
) -> Result<(usize, usize), ApiError> {
    let now = now_ms();
    let (targets, groups, refusals) = facts(st, now).await?;
    let mut want = conditions::evaluate(now, &targets, &groups, &refusals);
    want.extend(forecasts.evaluate(now, &targets));
    let open = st.db.alerts(false, 100_000).await?;
    let keys: HashSet<(&str, &str)> = want.iter().map(|f| (f.kind, f.subject.as_str())).collect();
    let mut resolved = 0;
    for a in &open {
        if !keys.contains(&(a.kind.as_str(), a.subject.as_str()))
            && st.db.resolve(a.id, &st.instance).await?.is_some()
        {
            tracing::info!(id = a.id, kind = %a.kind, subject = %a.subject, "alert resolved");
            resolved += 1;
        }
    }
    let mut fired = 0;
    for Firing {
        kind,
        subject,
        severity,
        summary,
    } in &want
    {
        if open
            .iter()
            .any(|a| a.kind == *kind && a.subject == *subject)
        {
            continue;
        }
        if let Some(a) = st
            .db
            .fire(kind, subject, severity, summary, &st.instance)
            .await?
        {
            tracing::warn!(id = a.id, kind, subject = %subject, %summary, "alert fired");
            fired += 1;
        }
    }
    if fired + resolved > 0 {
        st.deliver_now.notify_one();
    }
    Ok((fired, resolved))
}

/// What the conditions need, from the database.
async fn facts(
    st: &AppState,
    now: i64,
) -> Result<(Vec<TargetFacts>, Vec<GroupFacts>, Refusals), ApiError> {
    let targets = st
        .db
        .targets()
        .await?
        .into_iter()
        .map(|t| TargetFacts {
            name: t.name,
            state: t.state,
            reason: t.reason,
            last_seen_ms: t.last_seen_ms,
            free_bytes: t.free_bytes,
            capacity_bytes: t.capacity_bytes,
        })
        .collect();
    let rpo: HashMap<String, u64> = st
        .db
        .policies()
        .await?
        .into_iter()
        .map(|p| (p.name, p.rpo_target_secs))
        .collect();
    // The policy that applies to each group (assignments and labels resolved).
    let policy: HashMap<String, String> = st
        .db
        .group_views()
        .await?
        .into_iter()
        .map(|g| (g.name, g.policy))
        .collect();
    type Row = (String, String, String, i64, i64, String, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, target, state, agent_connected, agent_seen_ms, agent_mode, agent_rpo_ms, \
         agent_report_ms, agent_sync_permille, agent_progress_ms FROM groups ORDER BY name",
    )
    .fetch_all(&st.db.pool)
    .await?;
    // Each group's last drill (a query of its own: the row tuple above is at its size).
    type DrillRow = (String, i64, i64, i64, String);
    let drills: HashMap<String, DrillRow> = sqlx::query_as(
        "SELECT name, drill_last_ok, drill_ok_ms, drill_every_secs, drill_summary FROM groups",
    )
    .fetch_all(&st.db.pool)
    .await?
    .into_iter()
    .map(|r: DrillRow| (r.0.clone(), r))
    .collect();
    // Each group's last online verify: its job, bytes still differing, in how many ranges.
    type VerifyRow = (String, i64, i64, i64);
    let verifies: HashMap<String, VerifyRow> =
        sqlx::query_as("SELECT name, verify_job, verify_differs_bytes, verify_ranges FROM groups")
            .fetch_all(&st.db.pool)
            .await?
            .into_iter()
            .map(|r: VerifyRow| (r.0.clone(), r))
            .collect();
    let groups = rows
        .into_iter()
        .map(|r| GroupFacts {
            verify_job: verifies.get(&r.0).map_or(0, |v| v.1),
            verify_differs_bytes: verifies.get(&r.0).map_or(0, |v| v.2),
            verify_ranges: verifies.get(&r.0).map_or(0, |v| v.3),
            drill_last_failed: drills.get(&r.0).is_some_and(|d| d.1 == 0),
            drill_ok_ms: drills.get(&r.0).map_or(0, |d| d.2),
            drill_every_secs: drills.get(&r.0).map_or(0, |d| d.3),
            drill_summary: drills.get(&r.0).map(|d| d.4.clone()).unwrap_or_default(),
            rpo_target_secs: policy.get(&r.0).and_then(|p| rpo.get(p)).copied(),
            name: r.0,
            target: r.1,
            state: r.2,
            agent_connected: r.3,
            agent_seen_ms: r.4,
            agent_mode: r.5,
            agent_rpo_ms: r.6,
            agent_report_ms: r.7,
            agent_sync_permille: r.8,
            agent_progress_ms: r.9,
        })
        .collect();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT group_name, code, agent FROM refusals WHERE at_ms > $1 ORDER BY id")
            .bind(now - REFUSAL_WINDOW_MS)
            .fetch_all(&st.db.pool)
            .await?;
    let mut refusals = Refusals::new();
    for (group, code, agent) in rows {
        let e = refusals.entry((group, code)).or_default();
        e.0 += 1;
        if !e.1.contains(&agent) {
            e.1.push(agent);
        }
    }
    Ok((targets, groups, refusals))
}
