//! The leader's inventory loop: every target polled each interval (all at once), the answer
//! recorded, a target that does not answer marked down with the reason and its groups unknown.

use std::time::Duration;

use crate::server::AppState;

/// Run forever; idle while this instance does not lead.
pub async fn run(st: AppState, every: Duration) {
    loop {
        if st.is_leader() {
            if let Err(e) = once(&st, every).await {
                tracing::warn!(error = %e, "inventory poll failed");
            }
            let quiet = crate::server::client_jobs::CLIENT_JOB_QUIET_MS;
            match st.db.fail_stale_client_jobs(quiet).await {
                Ok(n) if n > 0 => tracing::warn!(jobs = n, "clients' jobs gone quiet failed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not check clients' jobs"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = st.poll_now.notified() => {}
        }
    }
}

/// Poll every target once.
pub async fn once(st: &AppState, every: Duration) -> Result<(), crate::error::ApiError> {
    let targets = st.db.targets().await?;
    let mut tasks = Vec::new();
    for t in targets {
        let st = st.clone();
        // A poll never takes longer than the interval (at least two seconds).
        let timeout = every.max(Duration::from_secs(2));
        tasks.push(tokio::spawn(async move {
            let r = async {
                let h = crate::targets::client(&st.state, &t.url, timeout)?;
                crate::targets::poll(&h).await
            }
            .await;
            match r {
                Ok(seen) => {
                    if st.db.record_seen(&t.name, &seen).await? {
                        tracing::info!(target = %t.name, "target up");
                        st.db
                            .event(
                                "target.up",
                                &t.name,
                                &format!("{} groups", seen.groups.len()),
                            )
                            .await?;
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    if st.db.mark_down(&t.name, &reason).await? {
                        tracing::warn!(target = %t.name, %reason, "target down");
                        st.db.event("target.down", &t.name, &reason).await?;
                    }
                }
            }
            Ok::<_, crate::error::ApiError>(())
        }));
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            tracing::warn!(error = %e, "recording a poll");
        }
    }
    // The console's charts: a sample of every group per 10 s.
    crate::console::samples::after_poll(&st.db).await;
    Ok(())
}
