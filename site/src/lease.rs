//! Which instance leads. On PostgreSQL: a session advisory lock held on a connection of its own;
//! whoever holds it leads, and it is released by the server the moment that session ends (the
//! leader's process dies, or its connection drops), so a standby trying once a second takes
//! over within about a second. A leader that loses its connection stops leading at the next
//! check, before a standby can have the lock. On SQLite there is one instance: it leads.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::{AnyConnection, Connection};

use crate::db::Backend;
use crate::server::AppState;

/// The advisory lock's key (any constant the site's database uses for nothing else).
pub const LOCK_KEY: i64 = 0x5245_5749_4e44_5354; // "REWINDST"
/// How often a standby tries for the lock and the leader checks its session.
pub const TICK: Duration = Duration::from_millis(500);

/// Run forever: keep `st.leader` true exactly while this instance holds the lease.
pub async fn run(st: AppState) {
    if st.db.backend == Backend::Sqlite {
        became_leader(&st).await;
        return;
    }
    let mut conn: Option<AnyConnection> = None;
    loop {
        tokio::time::sleep(TICK).await;
        if conn.is_none() {
            match AnyConnection::connect(&st.db.url).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    lose(&st, &format!("cannot reach the database: {e}"));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let r = if st.is_leader() {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut *c)
                .await
                .map(|_| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut *c)
                .await
        };
        match r {
            Ok(true) if !st.is_leader() => became_leader(&st).await,
            Ok(_) => {}
            Err(e) => {
                // The session (and with it the lock, if held) is gone.
                conn = None;
                lose(&st, &format!("lease session lost: {e}"));
            }
        }
    }
}

async fn became_leader(st: &AppState) {
    st.leader.store(true, Ordering::SeqCst);
    tracing::info!(instance = %st.instance, "leading: running polls, pushes and jobs");
    match st.db.fail_orphaned_jobs(&st.instance).await {
        Ok(n) if n > 0 => tracing::warn!(jobs = n, "jobs of the previous leader marked failed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not check the previous leader's jobs"),
    }
    if let Err(e) = st.db.fail_orphaned_plan_runs(&st.instance).await {
        tracing::warn!(error = %e, "could not check the previous leader's plan runs");
    }
    let _ = st
        .db
        .event("site.leader", &st.instance, "took the lease")
        .await;
    st.ring();
}

fn lose(st: &AppState, why: &str) {
    if st.leader.swap(false, Ordering::SeqCst) {
        tracing::warn!(instance = %st.instance, reason = why, "no longer leading");
    }
}
