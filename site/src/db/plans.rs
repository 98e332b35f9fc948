//! Recovery plans the site keeps (their TOML text) and the record of every run: its state, RTO
//! and each step as the targets reported it.

use serde::{Deserialize, Serialize};

use super::{int, now_ms, text, Db};
use crate::error::ApiError;

/// A stored plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StoredPlan {
    pub name: String,
    /// The plan's TOML, as given.
    pub text: String,
    pub created_by: String,
    pub created_ms: i64,
}

/// One step of a run, as the target that ran it reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PlanStep {
    pub target: String,
    /// hook, prepare, boot, health, manual, cleanup.
    pub kind: String,
    pub boot_group: String,
    pub machine: String,
    pub started_ms: i64,
    /// 0: not ended.
    pub ended_ms: i64,
    /// running, ok, failed, waiting.
    pub outcome: String,
    pub message: String,
}

/// One run of a plan (`GET /v1/plans/{name}/runs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRunRecord {
    pub id: i64,
    pub plan: String,
    pub mode: String,
    pub point: String,
    /// The site job that ran it.
    pub job: i64,
    /// running, succeeded, failed, cleaned.
    pub state: String,
    pub owner: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    /// From the start of the run until the last machine was healthy; -1 until then.
    pub rto_ms: i64,
    /// The targets it ran on, in order, comma-separated.
    pub targets: String,
    /// Why it failed, or what is left to do.
    pub detail: String,
    pub steps: Vec<PlanStep>,
}

impl Db {
    pub async fn add_plan(&self, name: &str, text: &str, by: &str) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO plans (name, text, created_by, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(text)
        .bind(by)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            ApiError::from_insert(
                e,
                format!("plan {name} exists already (delete it first to replace it)"),
            )
        })?;
        Ok(())
    }

    pub async fn plans(&self) -> Result<Vec<StoredPlan>, ApiError> {
        Ok(
            sqlx::query_as("SELECT name, text, created_by, created_ms FROM plans ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One plan, or 404 naming it.
    pub async fn plan(&self, name: &str) -> Result<StoredPlan, ApiError> {
        sqlx::query_as("SELECT name, text, created_by, created_ms FROM plans WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no plan {name} (see GET /v1/plans)")))
    }

    pub async fn remove_plan(&self, name: &str) -> Result<(), ApiError> {
        let n = sqlx::query("DELETE FROM plans WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(ApiError::not_found(format!("no plan {name}")));
        }
        Ok(())
    }

    /// Start recording a run; its id.
    pub async fn start_plan_run(
        &self,
        plan: &str,
        mode: &str,
        point: &str,
        job: i64,
        owner: &str,
        targets: &str,
    ) -> Result<i64, ApiError> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO plan_runs (plan, mode, point, job, state, owner, started_ms, ended_ms, \
             rto_ms, targets, detail) VALUES ($1, $2, $3, $4, 'running', $5, $6, 0, -1, $7, '') \
             RETURNING id",
        )
        .bind(plan)
        .bind(mode)
        .bind(point)
        .bind(job)
        .bind(owner)
        .bind(now_ms())
        .bind(targets)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Remove a run that never started (its first target refused it).
    pub async fn delete_plan_run(&self, id: i64) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM plan_runs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A run's state, RTO and detail (ended now unless it is still running).
    pub async fn end_plan_run(
        &self,
        id: i64,
        state: &str,
        rto_ms: i64,
        detail: &str,
    ) -> Result<(), ApiError> {
        let ended = if state == "running" { 0 } else { now_ms() };
        sqlx::query(
            "UPDATE plan_runs SET state = $2, rto_ms = $3, detail = $4, \
             ended_ms = CASE WHEN ended_ms = 0 THEN $5 ELSE ended_ms END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(rto_ms)
        .bind(detail)
        .bind(ended)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replace the steps a target reported for a run (from index `first` on).
    pub async fn record_plan_steps(
        &self,
        run: i64,
        first: i64,
        steps: &[PlanStep],
    ) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM plan_steps WHERE run = $1 AND idx >= $2")
            .bind(run)
            .bind(first)
            .execute(&mut *tx)
            .await?;
        for (i, s) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO plan_steps (run, idx, target, kind, boot_group, machine, \
                 started_ms, ended_ms, outcome, message) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(run)
            .bind(first + i as i64)
            .bind(&s.target)
            .bind(&s.kind)
            .bind(&s.boot_group)
            .bind(&s.machine)
            .bind(s.started_ms)
            .bind(s.ended_ms)
            .bind(&s.outcome)
            .bind(&s.message)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A plan's runs, newest first, with their steps.
    pub async fn plan_runs(&self, plan: &str, limit: i64) -> Result<Vec<PlanRunRecord>, ApiError> {
        let rows = sqlx::query(
            "SELECT id, plan, mode, point, job, state, owner, started_ms, ended_ms, rto_ms, \
             targets, detail FROM plan_runs WHERE plan = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(plan)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = int(r, "id")?;
            let steps: Vec<PlanStep> = sqlx::query_as(
                "SELECT target, kind, boot_group, machine, started_ms, ended_ms, outcome, \
                 message FROM plan_steps WHERE run = $1 ORDER BY idx",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            out.push(PlanRunRecord {
                id,
                plan: text(r, "plan")?,
                mode: text(r, "mode")?,
                point: text(r, "point")?,
                job: int(r, "job")?,
                state: text(r, "state")?,
                owner: text(r, "owner")?,
                started_ms: int(r, "started_ms")?,
                ended_ms: int(r, "ended_ms")?,
                rto_ms: int(r, "rto_ms")?,
                targets: text(r, "targets")?,
                detail: text(r, "detail")?,
                steps,
            });
        }
        Ok(out)
    }

    /// Runs left `running` by an instance that no longer leads: failed with the reason (the
    /// machines the targets booted stay up; `cleanup` removes a test run's).
    pub async fn fail_orphaned_plan_runs(&self, me: &str) -> Result<u64, ApiError> {
        Ok(sqlx::query(
            "UPDATE plan_runs SET state = 'failed', detail = 'the instance running it stopped \
             leading (' || owner || '); see the targets'' plan status, clean up and run it again', \
             ended_ms = $2 WHERE state = 'running' AND owner <> $1",
        )
        .bind(me)
        .bind(now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_record_steps_and_a_new_leader_fails_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        db.add_plan("p", "name = \"p\"", "user a").await.unwrap();
        let e = db.add_plan("p", "x", "user a").await.unwrap_err();
        assert_eq!(e.status, 409);
        let run = db
            .start_plan_run("p", "test", "", 7, "old:1", "t1,t2")
            .await
            .unwrap();
        let step = |t: &str, m: &str| PlanStep {
            target: t.into(),
            kind: "boot".into(),
            boot_group: "g".into(),
            machine: m.into(),
            started_ms: 1,
            ended_ms: 2,
            outcome: "ok".into(),
            message: String::new(),
        };
        db.record_plan_steps(run, 0, &[step("t1", "m1")])
            .await
            .unwrap();
        db.record_plan_steps(run, 1, &[step("t2", "m2")])
            .await
            .unwrap();
        // A segment's steps are replaced as they change, the earlier segment's stay.
        db.record_plan_steps(run, 1, &[step("t2", "m2"), step("t2", "m3")])
            .await
            .unwrap();
        assert_eq!(db.fail_orphaned_plan_runs("old:1").await.unwrap(), 0);
        assert_eq!(db.fail_orphaned_plan_runs("new:2").await.unwrap(), 1);
        let runs = db.plan_runs("p", 10).await.unwrap();
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(r.state, "failed");
        assert!(r.detail.contains("stopped leading (old:1)"), "{}", r.detail);
        assert!(r.ended_ms > 0);
        let machines: Vec<&str> = r.steps.iter().map(|s| s.machine.as_str()).collect();
        assert_eq!(machines, ["m1", "m2", "m3"]);
        db.remove_plan("p").await.unwrap();
        assert_eq!(db.plan("p").await.unwrap_err().status, 404);
    }
}
