//! The leader's policy loop: every group whose target runs an older policy version than the
//! one that applies to it (by name or by label) gets it pushed (`PUT /v1/groups/{G}/policy`),
//! as one site job per round with progress. It runs at once after any change (the API rings
//! [`AppState::wake`]) and otherwise every second; a failed push is retried after
//! [`RETRY_MS`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::now_ms;
use crate::db::policies::PushOutcome;
use crate::error::ApiError;
use crate::https::Https;
use crate::server::AppState;
use rewind_formats::policy::Policy;

/// Pushes in flight at once, across targets.
const PARALLEL: usize = 16;

/// Wait this long before pushing again to a group whose last push failed.
pub const RETRY_MS: i64 = 5_000;

pub async fn run(st: AppState) {
    loop {
        if st.is_leader() {
            if let Err(e) = once(&st).await {
                tracing::warn!(error = %e, "policy push round failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = st.wake.notified() => {}
        }
    }
}

/// One round: push what is out of date to targets that are up.
pub async fn once(st: &AppState) -> Result<(), ApiError> {
    let groups = st.db.group_views().await?;
    let targets = st.db.targets().await?;
    let pushes = st.db.pushes().await?;
    let now = now_ms();
    let todo: Vec<_> = groups
        .into_iter()
        .filter(|g| !g.policy.is_empty() && g.outdated && g.state != "unknown")
        .filter(|g| {
            targets
                .iter()
                .any(|t| t.name == g.target && t.state == "up")
        })
        .filter(|g| match pushes.get(&g.name) {
            // The same version failed lately: wait before trying again.
            Some((_, p, v, err, at)) => {
                !(p == &g.policy
                    && *v == g.policy_version
                    && !err.is_empty()
                    && now - at < RETRY_MS)
            }
            None => true,
        })
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let job = st
        .db
        .start_job(
            "policy.push",
            &format!("{} groups", todo.len()),
            todo.len() as i64,
            &st.instance,
        )
        .await?;
    let policies: HashMap<String, Arc<Policy>> = st
        .db
        .policies()
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), Arc::new(p)))
        .collect();
    // One client per target (its TLS settings read once), shared by that target's pushes.
    let mut clients: HashMap<String, Arc<Https>> = HashMap::new();
    for t in &targets {
        match crate::targets::client(&st.state, &t.url, Duration::from_secs(5)) {
            Ok(h) => {
                clients.insert(t.name.clone(), Arc::new(h));
            }
            Err(e) => tracing::warn!(target = %t.name, error = %format!("{e:#}"), "no client"),
        }
    }
    // Pushes run PARALLEL at a time, so a round of a thousand groups takes seconds, not a
    // thousand round trips; the outcomes are recorded in one transaction at the end.
    let mut running = tokio::task::JoinSet::new();
    let mut outcomes = Vec::with_capacity(todo.len());
    let mut last_progress = Instant::now();
    for g in &todo {
        while running.len() >= PARALLEL {
            if let Some(Ok(o)) = running.join_next().await {
                outcomes.push(o);
            }
            progress(st, job, outcomes.len(), &mut last_progress).await?;
        }
        let Some(policy) = policies.get(&g.policy).cloned() else {
            continue;
        };
        let client = clients.get(&g.target).cloned();
        let (group, target) = (g.name.clone(), g.target.clone());
        running.spawn(async move { push_one(client, group, target, policy).await });
    }
    while let Some(r) = running.join_next().await {
        if let Ok(o) = r {
            outcomes.push(o);
        }
    }
    st.db.record_pushes(&outcomes).await?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.error.is_empty())
        .map(|o| {
            tracing::warn!(group = %o.group, target = %o.target, error = %o.error, "policy push failed");
            format!("{}: {}", o.group, o.error)
        })
        .collect();
    let (state, detail) = if failed.is_empty() {
        ("done", String::new())
    } else {
        ("failed", failed.join("; "))
    };
    st.db
        .job_progress(job, todo.len() as i64, state, &detail)
        .await?;
    Ok(())
}

/// `PUT /v1/groups/{G}/policy` on the group's target; what came of it.
async fn push_one(
    client: Option<Arc<Https>>,
    group: String,
    target: String,
    policy: Arc<Policy>,
) -> PushOutcome {
    let path = format!("/v1/groups/{group}/policy");
    let r = async {
        let h = client.ok_or_else(|| anyhow::anyhow!("no client for target {target}"))?;
        let reply = h
            .request("PUT", &path, Some(serde_json::to_vec(&*policy)?))
            .await?;
        crate::targets::body(reply, "PUT", &path)
    }
    .await;
    PushOutcome {
        error: r.err().map(|e| format!("{e:#}")).unwrap_or_default(),
        group,
        target,
        policy: policy.name.clone(),
        version: policy.version,
    }
}

/// The job's progress, written at most every quarter second (each write is a commit).
async fn progress(
    st: &AppState,
    job: i64,
    done: usize,
    last: &mut Instant,
) -> Result<(), ApiError> {
    if last.elapsed() >= Duration::from_millis(250) {
        st.db.job_progress(job, done as i64, "running", "").await?;
        *last = Instant::now();
    }
    Ok(())
}
