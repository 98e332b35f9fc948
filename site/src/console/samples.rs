//! The per-group time series the console's charts draw: after each inventory poll the leader
//! records, once per [`RES_S`] seconds (aligned, so two instances write the same rows and the
//! primary key keeps one), each group's RPO bound and target, journal bytes and durable seq, and
//! what changed since the previous sample. Samples older than a day are folded into
//! [`COARSE_S`]-second ones (worst RPO, sums of the changes); nothing is kept past 30 days.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::Serialize;

use super::facts;
use crate::db::{now_ms, Db};
use crate::error::ApiError;

/// The fine resolution, seconds.
pub const RES_S: i64 = 10;
/// The resolution past [`FINE_FOR_MS`], seconds.
pub const COARSE_S: i64 = 300;
/// How long fine samples are kept.
pub const FINE_FOR_MS: i64 = 24 * 3600 * 1000;
/// How long any sample is kept.
pub const KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

/// Rows per INSERT (12 values each: well under SQLite's bound on parameters).
const BATCH: usize = 100;

static LAST_BUCKET: AtomicI64 = AtomicI64::new(0);
static LAST_FOLD: AtomicI64 = AtomicI64::new(0);

/// One point of a chart.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Sample {
    pub at_ms: i64,
    pub res_s: i64,
    pub rpo_ms: i64,
    pub rpo_target_ms: i64,
    pub journal_bytes: i64,
    pub durable_seq: i64,
    pub applied_bytes: i64,
    pub records: i64,
    /// The agent's counters at this sample (-1: unknown): captured, sent before compression,
    /// on the wire, since the agent started. [`rates`] turns them into bytes per second.
    pub captured_total: i64,
    pub sent_total: i64,
    pub wire_total: i64,
}

/// A counter's growth per second between consecutive samples, one point per later sample:
/// None where either is unknown; a drop (the agent restarted) counts from 0.
pub fn rates(series: &[Sample], counter: fn(&Sample) -> i64) -> Vec<(i64, f64)> {
    series
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (counter(&w[0]), counter(&w[1]));
            let secs = (w[1].at_ms - w[0].at_ms) as f64 / 1000.0;
            if a < 0 || b < 0 || secs <= 0.0 {
                return None;
            }
            let grew = if b >= a { b - a } else { b };
            Some((w[1].at_ms, grew as f64 / secs))
        })
        .collect()
}

/// Called by the leader after every poll: sample if a new bucket began, fold once a minute.
pub async fn after_poll(db: &Db) {
    let now = now_ms();
    let bucket = now - now.rem_euclid(RES_S * 1000);
    if LAST_BUCKET.swap(bucket, Ordering::SeqCst) != bucket {
        if let Err(e) = record(db, bucket, now).await {
            tracing::warn!(error = %e, "recording the console's samples");
        }
    }
    if now - LAST_FOLD.load(Ordering::SeqCst) >= 60_000 {
        LAST_FOLD.store(now, Ordering::SeqCst);
        if let Err(e) = fold(db, now).await {
            tracing::warn!(error = %e, "downsampling the console's samples");
        }
    }
}

/// Record one sample of every group at `bucket`.
pub async fn record(db: &Db, bucket: i64, now: i64) -> Result<usize, ApiError> {
    let rows = facts::groups(db, now, None).await?;
    // The previous sample of each group (within a minute: a gap starts the deltas afresh).
    let prev: HashMap<String, (i64, i64)> = sqlx::query_as::<_, (String, i64, i64, i64)>(
        "SELECT group_name, at_ms, journal_bytes, durable_seq FROM group_samples \
         WHERE res_s = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms",
    )
    .bind(RES_S)
    .bind(bucket - 60_000)
    .bind(bucket)
    .fetch_all(&db.pool)
    .await?
    .into_iter()
    .map(|(g, _, j, s)| (g, (j, s)))
    .collect();
    let mut tx = db.begin().await?;
    for chunk in rows.chunks(BATCH) {
        let mut sql = String::from(
            "INSERT INTO group_samples (group_name, res_s, at_ms, rpo_ms, rpo_target_ms, \
             journal_bytes, durable_seq, applied_bytes, records, captured_total, sent_total, \
             wire_total) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let row: Vec<String> = (1..=12).map(|k| format!("${}", i * 12 + k)).collect();
            sql.push_str(&format!("({})", row.join(",")));
        }
        sql.push_str(" ON CONFLICT (group_name, res_s, at_ms) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for g in chunk {
            // A journal that shrank (merged, retention) or a seq that went back (recreated)
            // counts as no change rather than a negative one.
            let (applied, records) = match prev.get(&g.name) {
                Some((j, s)) => ((g.journal_bytes - j).max(0), (g.durable_seq - s).max(0)),
                None => (0, 0),
            };
            q = q
                .bind(g.name.clone())
                .bind(RES_S)
                .bind(bucket)
                .bind(g.rpo_ms)
                .bind(g.rpo_target_ms)
                .bind(g.journal_bytes)
                .bind(g.durable_seq)
                .bind(applied)
                .bind(records)
                .bind(g.agent_bytes.captured)
                .bind(g.agent_bytes.sent)
                .bind(g.agent_bytes.wire);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// Fold fine samples older than a day into coarse ones, and drop what is past 30 days.
pub async fn fold(db: &Db, now: i64) -> Result<(), ApiError> {
    let c = COARSE_S * 1000;
    // Whole coarse buckets only: none is ever folded half now and half later.
    let cutoff = (now - FINE_FOR_MS).div_euclid(c) * c;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO group_samples (group_name, res_s, at_ms, rpo_ms, rpo_target_ms, \
         journal_bytes, durable_seq, applied_bytes, records, captured_total, sent_total, \
         wire_total) \
         SELECT group_name, $1, (at_ms / $2) * $2, MAX(rpo_ms), MAX(rpo_target_ms), \
         MAX(journal_bytes), MAX(durable_seq), SUM(applied_bytes), SUM(records), \
         MAX(captured_total), MAX(sent_total), MAX(wire_total) \
         FROM group_samples WHERE res_s = $3 AND at_ms < $4 GROUP BY group_name, at_ms / $2 \
         ON CONFLICT (group_name, res_s, at_ms) DO NOTHING",
    )
    .bind(COARSE_S)
    .bind(c)
    .bind(RES_S)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM group_samples WHERE (res_s = $1 AND at_ms < $2) OR at_ms < $3")
        .bind(RES_S)
        .bind(cutoff)
        .bind(now - KEEP_MS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A group's samples from `since_ms` on, oldest first (coarse ones, then fine).
pub async fn series(db: &Db, group: &str, since_ms: i64) -> Result<Vec<Sample>, ApiError> {
    Ok(sqlx::query_as::<_, Sample>(
        "SELECT at_ms, res_s, rpo_ms, rpo_target_ms, journal_bytes, durable_seq, \
         applied_bytes, records, captured_total, sent_total, wire_total FROM group_samples WHERE group_name = $1 AND at_ms >= $2 \
         ORDER BY at_ms, res_s",
    )
    .bind(group)
    .bind(since_ms)
    .fetch_all(&db.pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let d = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", d.path().join("t.db").display());
        let db = Db::open(&url).await.unwrap();
        (d, db)
    }

    async fn put(db: &Db, g: &str, res: i64, at: i64, rpo: i64, bytes: i64) {
        sqlx::query(
            "INSERT INTO group_samples (group_name, res_s, at_ms, rpo_ms, rpo_target_ms, \
             journal_bytes, durable_seq, applied_bytes, records) \
             VALUES ($1, $2, $3, $4, 0, 0, 0, $5, 1)",
        )
        .bind(g)
        .bind(res)
        .bind(at)
        .bind(rpo)
        .bind(bytes)
        .execute(&db.pool)
        .await
        .unwrap();
    }

    fn at(at_ms: i64, captured: i64) -> Sample {
        Sample {
            at_ms,
            res_s: RES_S,
            rpo_ms: 0,
            rpo_target_ms: 0,
            journal_bytes: 0,
            durable_seq: 0,
            applied_bytes: 0,
            records: 0,
            captured_total: captured,
            sent_total: -1,
            wire_total: -1,
        }
    }

    #[test]
    fn rates_are_per_second_and_a_restart_counts_from_zero() {
        let s = [
            at(0, -1),
            at(10_000, 1000),
            at(20_000, 21_000),
            at(30_000, 500),
            at(40_000, 500),
        ];
        assert_eq!(
            rates(&s, |s| s.captured_total),
            [(20_000, 2000.0), (30_000, 50.0), (40_000, 0.0)],
            "unknown before the first report; a drop is a restart"
        );
        assert!(rates(&s, |s| s.wire_total).is_empty());
    }

    #[tokio::test]
    async fn fold_keeps_worst_rpo_and_sums_past_a_day_and_drops_past_30_days() {
        let (_d, db) = db().await;
        let now = 40 * 24 * 3600 * 1000;
        let old = now - 2 * FINE_FOR_MS;
        let old = old - old.rem_euclid(COARSE_S * 1000);
        for i in 0..30 {
            put(&db, "g", RES_S, old + i * 10_000, i * 100, 7).await;
        }
        put(&db, "g", RES_S, now - 5_000, 1, 1).await;
        put(&db, "g", COARSE_S, now - KEEP_MS - 1, 1, 1).await;
        fold(&db, now).await.unwrap();
        let s = series(&db, "g", 0).await.unwrap();
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.at_ms, s.res_s, s.rpo_ms, s.applied_bytes, s.records))
            .collect();
        assert_eq!(
            got,
            [
                (old, COARSE_S, 2900, 7 * 30, 30),
                (now - 5_000, RES_S, 1, 1, 1)
            ]
        );
        // Folding again changes nothing.
        fold(&db, now).await.unwrap();
        assert_eq!(series(&db, "g", 0).await.unwrap().len(), 2);
    }
}
