//! The leader's policy loop: every group whose target runs an older policy version than the
//! one that applies to it (by name or by label) gets it pushed (`PUT /v1/groups/{G}/policy`),
//! as one site job per round with progress. It runs at once after any change (the API rings
//! [`AppState::wake`]) and otherwise every second; a failed push is retried after
//! [`RETRY_MS`].

use std::time::Duration;

use crate::db::now_ms;
use crate::error::ApiError;
use crate::server::AppState;

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
    let mut failed = Vec::new();
    for (n, g) in todo.iter().enumerate() {
        let policy = st.db.policy(&g.policy).await?;
        let Some(t) = targets.iter().find(|t| t.name == g.target) else {
            continue;
        };
        let path = format!("/v1/groups/{}/policy", g.name);
        let r = async {
            let h = crate::targets::client(&st.state, &t.url, Duration::from_secs(5))?;
            let reply = h
                .request("PUT", &path, Some(serde_json::to_vec(&policy)?))
                .await?;
            crate::targets::body(reply, "PUT", &path)
        }
        .await;
        let err = match &r {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        };
        st.db
            .record_push(&g.name, &t.name, &policy.name, policy.version, &err)
            .await?;
        if err.is_empty() {
            st.db
                .event(
                    "policy.applied",
                    &g.name,
                    &format!("{} version {} on {}", policy.name, policy.version, t.name),
                )
                .await?;
        } else {
            tracing::warn!(group = %g.name, target = %t.name, error = %err, "policy push failed");
            failed.push(format!("{}: {err}", g.name));
        }
        st.db.job_progress(job, n as i64 + 1, "running", "").await?;
    }
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
