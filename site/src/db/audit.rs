//! The audit log (who, what, when, result) and the event log (state changes the site saw).

use serde::{Deserialize, Serialize};

use super::{now_ms, Db};
use crate::error::ApiError;

/// One audited request or operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub who: String,
    /// What was asked: `policy.update`, `target.add`, ...
    pub action: String,
    /// What it was asked of (a name).
    pub subject: String,
    /// The request's arguments, as text (never a password or a token).
    pub detail: String,
    /// `ok`, `denied: ...` or `error: ...`.
    pub result: String,
}

/// One state change: a target down or up, a policy applied, ...
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    pub subject: String,
    pub detail: String,
}

impl Db {
    pub async fn audit(
        &self,
        who: &str,
        action: &str,
        subject: &str,
        detail: &str,
        result: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO audit (at_ms, who, action, subject, detail, result) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now_ms())
        .bind(who)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .bind(result)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` entries, oldest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, ApiError> {
        let mut out: Vec<AuditEntry> = sqlx::query_as(
            "SELECT id, at_ms, who, action, subject, detail, result FROM audit \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        out.reverse();
        Ok(out)
    }

    pub async fn event(&self, kind: &str, subject: &str, detail: &str) -> Result<(), ApiError> {
        sqlx::query("INSERT INTO events (at_ms, kind, subject, detail) VALUES ($1, $2, $3, $4)")
            .bind(now_ms())
            .bind(kind)
            .bind(subject)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest `limit` events, oldest first.
    pub async fn events(&self, limit: i64) -> Result<Vec<Event>, ApiError> {
        let mut out: Vec<Event> = sqlx::query_as(
            "SELECT id, at_ms, kind, subject, detail FROM events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        out.reverse();
        Ok(out)
    }
}

impl Db {
    /// The newest event's id (0: none yet).
    pub async fn last_event_id(&self) -> Result<i64, ApiError> {
        let r: (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.0.unwrap_or(0))
    }

    /// Up to `limit` events after id `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, ApiError> {
        Ok(sqlx::query_as(
            "SELECT id, at_ms, kind, subject, detail FROM events WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
