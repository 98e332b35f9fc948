//! What site-wide operations read and write besides their own tables: one job, a job's progress
//! published as a `job.progress` event, and which target owns a group.

use serde::{Deserialize, Serialize};

use super::jobs::Job;
use super::Db;
use crate::error::ApiError;

/// The detail of a `job.progress` event (JSON), what `/v1/events/follow` carries live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    pub job: i64,
    pub kind: String,
    pub subject: String,
    pub done: i64,
    pub total: i64,
    pub state: String,
}

impl Db {
    /// One job, or 404 naming it.
    pub async fn job(&self, id: i64) -> Result<Job, ApiError> {
        sqlx::query_as(
            "SELECT id, kind, subject, state, done, total, detail, owner, created_ms, updated_ms \
             FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id} (see `rewind-site jobs`)")))
    }

    /// Remove a job that never started (its target refused the operation).
    pub async fn delete_job(&self, id: i64) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record a job's progress and publish it as a `job.progress` event (subject: the job id).
    pub async fn job_step(
        &self,
        id: i64,
        done: i64,
        state: &str,
        detail: &str,
    ) -> Result<(), ApiError> {
        self.job_progress(id, done, state, detail).await?;
        let j = self.job(id).await?;
        self.publish_progress(j).await
    }

    /// A job's state as a `job.progress` event (subject: the job id).
    pub async fn publish_progress(&self, j: Job) -> Result<(), ApiError> {
        let id = j.id;
        let p = JobProgress {
            job: j.id,
            kind: j.kind,
            subject: j.subject,
            done: j.done,
            total: j.total,
            state: j.state,
        };
        let detail = serde_json::to_string(&p).map_err(|e| ApiError::internal(e.to_string()))?;
        self.event("job.progress", &id.to_string(), &detail).await
    }

    /// The target that owns a group: the one that reports it, else the one it was protected on.
    pub async fn group_owner(&self, group: &str) -> Result<Option<String>, ApiError> {
        let seen: Option<(String,)> = sqlx::query_as("SELECT target FROM groups WHERE name = $1")
            .bind(group)
            .fetch_optional(&self.pool)
            .await?;
        if let Some((t,)) = seen {
            return Ok(Some(t));
        }
        let protected: Option<(String,)> =
            sqlx::query_as("SELECT target FROM protections WHERE group_name = $1")
                .bind(group)
                .fetch_optional(&self.pool)
                .await?;
        Ok(protected.map(|p| p.0))
    }

    /// The value of a group's label `key`, if it has one.
    pub async fn group_label(&self, group: &str, key: &str) -> Result<Option<String>, ApiError> {
        let r: Option<(String,)> =
            sqlx::query_as("SELECT value FROM group_labels WHERE group_name = $1 AND key = $2")
                .bind(group)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(r.map(|r| r.0))
    }

    /// The bundle directory `protect` wrote for a group, if it was protected through the site.
    pub async fn protection_bundle(&self, group: &str) -> Result<Option<String>, ApiError> {
        let r: Option<(String,)> =
            sqlx::query_as("SELECT bundle FROM protections WHERE group_name = $1")
                .bind(group)
                .fetch_optional(&self.pool)
                .await?;
        Ok(r.map(|r| r.0))
    }
}
