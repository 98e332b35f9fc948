//! The leader follows each target's event stream (`GET /v1/events`, server-sent events): an
//! agent that connects is recorded with its version and address, and every event triggers an
//! immediate poll, so the inventory follows the targets within moments rather than a poll
//! interval. A stream that ends or cannot open is retried; polling goes on regardless.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Result};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::db::now_ms;
use crate::server::AppState;

/// Run forever: one watcher per registered target while this instance leads.
pub async fn run(st: AppState) {
    let mut watching: HashMap<String, (String, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let targets = if st.is_leader() {
            st.db.targets().await.unwrap_or_default()
        } else {
            Vec::new()
        };
        watching.retain(|name, (url, task)| {
            let keep =
                !task.is_finished() && targets.iter().any(|t| &t.name == name && &t.url == url);
            if !keep {
                task.abort();
            }
            keep
        });
        for t in targets {
            if watching.contains_key(&t.name) {
                continue;
            }
            let (st2, name, url) = (st.clone(), t.name.clone(), t.url.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = follow(&st2, &name, &url).await {
                    tracing::debug!(target = %name, error = %format!("{e:#}"), "event stream ended");
                }
                // Let the next round (a second later) reopen it.
            });
            watching.insert(t.name, (t.url, task));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(st: &AppState, name: &str, url: &str) -> Result<()> {
    let h = crate::targets::client(&st.state, url, Duration::from_secs(5))?;
    let (status, mut body) = h.stream("/v1/events").await?;
    if status != 200 {
        bail!("GET /v1/events: HTTP {status}");
    }
    let mut sse = crate::sse::SseReader::default();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for json in sse.push(data)? {
            if let Ok(v) = serde_json::from_str::<Value>(&json) {
                handle(st, name, &v).await;
            }
        }
    }
    Ok(())
}

async fn handle(st: &AppState, target: &str, v: &Value) {
    let kind = v["kind"].as_str().unwrap_or_default();
    let group = v["group"].as_str().unwrap_or_default();
    if kind == "group.connected" {
        let agent = v["agent"].as_str().unwrap_or_default();
        let r = sqlx::query(
            "INSERT INTO agents (name, target, group_name, version, host, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET \
             target = excluded.target, group_name = excluded.group_name, \
             version = excluded.version, host = excluded.host, last_seen_ms = excluded.last_seen_ms",
        )
        .bind(agent)
        .bind(target)
        .bind(group)
        .bind(v["version"].as_str().unwrap_or_default())
        .bind(v["host"].as_str().unwrap_or_default())
        .bind(now_ms())
        .execute(&st.db.pool)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "recording agent {agent}");
        }
    }
    if matches!(kind, "group.disconnected" | "session.refused") {
        if let Some(code) = v["code"].as_str() {
            let agent = v["agent"].as_str().unwrap_or_default();
            if let Err(e) = st.db.record_refusal(target, group, agent, code).await {
                tracing::warn!(error = %e, "recording a refusal of {agent}");
            }
        }
    }
    // A verify's result reaches the alert `verify_mismatch` through the poll below (the
    // group's `verify` in `GET /v1/groups`), which the target keeps across its restarts.
    if matches!(
        kind,
        "group.connected"
            | "group.disconnected"
            | "session.refused"
            | "verify.mismatch"
            | "verify.finished"
            | "sync.started"
            | "sync.finished"
            | "policy.applied"
    ) {
        let _ = st
            .db
            .event(
                &format!("target.{kind}"),
                group,
                &format!("on {target}: {v}"),
            )
            .await;
    }
    st.poll_now.notify_one();
}
