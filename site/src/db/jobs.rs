//! Site jobs with progress (`done` of `total`), run by the leading instance.

use serde::{Deserialize, Serialize};

use super::{now_ms, Db};
use crate::error::ApiError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    /// `running`, `done` or `failed` (with the reason in `detail`).
    pub state: String,
    pub done: i64,
    pub total: i64,
    pub detail: String,
    /// The instance that ran it.
    pub owner: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Db {
    pub async fn start_job(
        &self,
        kind: &str,
        subject: &str,
        total: i64,
        owner: &str,
    ) -> Result<i64, ApiError> {
        let now = now_ms();
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO jobs (kind, subject, state, done, total, detail, owner, created_ms, \
             updated_ms) VALUES ($1, $2, 'running', 0, $3, '', $4, $5, $5) RETURNING id",
        )
        .bind(kind)
        .bind(subject)
        .bind(total)
        .bind(owner)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn job_progress(
        &self,
        id: i64,
        done: i64,
        state: &str,
        detail: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE jobs SET done = $2, state = $3, detail = $4, updated_ms = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(done)
        .bind(state)
        .bind(detail)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs left `running` by an instance that is no longer leading are failed with the reason
    /// (a new leader never runs them a second time).
    pub async fn fail_orphaned_jobs(&self, me: &str) -> Result<u64, ApiError> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'failed', detail = 'the instance running it stopped leading \
             (' || owner || '); run it again', updated_ms = $2 WHERE state = 'running' \
             AND owner <> $1",
        )
        .bind(me)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn jobs(&self, limit: i64) -> Result<Vec<Job>, ApiError> {
        let mut out: Vec<Job> = sqlx::query_as(
            "SELECT id, kind, subject, state, done, total, detail, owner, created_ms, updated_ms \
             FROM jobs ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        out.reverse();
        Ok(out)
    }
}
