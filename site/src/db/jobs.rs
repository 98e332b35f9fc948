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
    /// (a new leader never runs them a second time). Clients' jobs do not run in an instance:
    /// [`Db::fail_stale_client_jobs`] ends those.
    pub async fn fail_orphaned_jobs(&self, me: &str) -> Result<u64, ApiError> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'failed', detail = 'the instance running it stopped leading \
             (' || owner || '); run it again', updated_ms = $2 WHERE state = 'running' \
             AND owner <> $1 AND owner NOT LIKE 'client:%'",
        )
        .bind(me)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A client's step of a job it started ([`Db::start_job`] with owner `client:WHO`): only
    /// that client may report, and only while the job runs.
    pub async fn client_job_progress(
        &self,
        id: i64,
        owner: &str,
        done: i64,
        state: &str,
        detail: &str,
    ) -> Result<Job, ApiError> {
        let n = sqlx::query(
            "UPDATE jobs SET done = $3, state = $4, detail = $5, updated_ms = $6 \
             WHERE id = $1 AND owner = $2 AND state = 'running' AND $3 <= total",
        )
        .bind(id)
        .bind(owner)
        .bind(done)
        .bind(state)
        .bind(detail)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        let job = self.job(id).await?;
        if n == 0 {
            return Err(ApiError::conflict(format!(
                "job {id} ({} of {}, {}, owner {}) takes no step from {owner}: only its own \
                 client reports, up to its total, while it runs",
                job.kind, job.subject, job.state, job.owner
            )));
        }
        Ok(job)
    }

    /// Clients' jobs with no step for `quiet_ms` are failed: their client stopped (killed,
    /// disconnected) without saying so.
    pub async fn fail_stale_client_jobs(&self, quiet_ms: i64) -> Result<u64, ApiError> {
        let now = now_ms();
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'failed', detail = 'its client stopped reporting (last \
             step: ' || detail || ')', updated_ms = $1 WHERE state = 'running' \
             AND owner LIKE 'client:%' AND updated_ms < $2",
        )
        .bind(now)
        .bind(now - quiet_ms)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_reports_its_own_job_and_a_quiet_one_is_failed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        let mine = db
            .start_job("push-install", "web01", 7, "client:cert admin")
            .await
            .unwrap();
        let leaders = db.start_job("failover", "g1", 4, "old:1").await.unwrap();

        let j = db
            .client_job_progress(mine, "client:cert admin", 3, "running", "copy package")
            .await
            .unwrap();
        assert_eq!((j.done, j.total, j.detail.as_str()), (3, 7, "copy package"));
        // Another caller, a step past the total, and the leader's own job are refused.
        for (id, who, done) in [
            (mine, "client:cert ops", 4),
            (mine, "client:cert admin", 8),
            (leaders, "client:cert admin", 1),
        ] {
            let e = db
                .client_job_progress(id, who, done, "running", "x")
                .await
                .unwrap_err();
            assert_eq!(e.status, 409, "{}", e.message);
        }
        assert_eq!(db.job(mine).await.unwrap().done, 3);

        // A new leader fails the old leader's job, not the client's.
        assert_eq!(db.fail_orphaned_jobs("new:2").await.unwrap(), 1);
        assert_eq!(db.job(mine).await.unwrap().state, "running");
        // Quiet for less than the limit: left running; then failed, its last step named.
        assert_eq!(db.fail_stale_client_jobs(60_000).await.unwrap(), 0);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(db.fail_stale_client_jobs(1).await.unwrap(), 1);
        let j = db.job(mine).await.unwrap();
        assert_eq!(j.state, "failed");
        assert!(j.detail.contains("copy package"), "{}", j.detail);
        // A failed job takes no more steps.
        db.client_job_progress(mine, "client:cert admin", 4, "running", "install")
            .await
            .unwrap_err();
    }
}
