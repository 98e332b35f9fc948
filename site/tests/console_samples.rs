//! The console's time series on both backends (SQLite, and a throwaway PostgreSQL cluster when
//! installed): migration 0005 applies, a sample of every group is recorded from the inventory
//! with its deltas and the agent's byte counters, the journal forecast fits its samples, fine
//! samples past a day fold into 5-minute ones, nothing outlives 30 days.

mod common;

use common::site::{scratch, Backend};
use rewind_site::console::facts::groups;
use rewind_site::console::forecast;
use rewind_site::console::samples::{
    fold, rates, record, series, COARSE_S, FINE_FOR_MS, KEEP_MS, RES_S,
};
use rewind_site::db::Db;

async fn insert_group(db: &Db, name: &str, journal: i64, seq: i64) {
    sqlx::query(
        "INSERT INTO groups (name, target, state, generation, durable_seq, journal_bytes, \
         retention, running_policy, running_version, seen_ms) \
         VALUES ($1, 't1', 'ok', 1, $2, $3, '1h', '', 0, 0) \
         ON CONFLICT (name) DO UPDATE SET durable_seq = excluded.durable_seq, \
         journal_bytes = excluded.journal_bytes, agent_captured_bytes = $4, \
         agent_sent_bytes = $4, agent_wire_bytes = $4 / 4",
    )
    .bind(name)
    .bind(seq)
    .bind(journal)
    // The agent's counters: 10x the journal's growth written, a quarter of it on the wire.
    .bind((journal - 1000) * 10)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn check(url: &str) {
    let db = Db::open(url).await.unwrap();
    let day = 24 * 3600 * 1000;
    let t0 = 40 * day;
    let t0 = t0 - t0 % (COARSE_S * 1000);
    for g in ["a", "b"] {
        insert_group(&db, g, 1000, 10).await;
    }
    // Thirty fine samples, five minutes' worth: the journal and seq grow each time.
    for i in 0..30 {
        for g in ["a", "b"] {
            insert_group(&db, g, 1000 + 100 * i, 10 + i).await;
        }
        let at = t0 + i * 10_000;
        assert_eq!(record(&db, at, at).await.unwrap(), 2);
        // A second instance recording the same bucket adds nothing.
        record(&db, at, at).await.unwrap();
    }
    let s = series(&db, "a", 0).await.unwrap();
    assert_eq!(s.len(), 30);
    assert_eq!((s[0].applied_bytes, s[0].records), (0, 0));
    assert!(s[1..]
        .iter()
        .all(|s| s.applied_bytes == 100 && s.records == 1));
    assert_eq!((s[29].captured_total, s[29].wire_total), (29_000, 7_250));
    let captured = rates(&s, |s| s.captured_total);
    assert_eq!(captured.len(), 29);
    assert!(captured.iter().all(|(_, r)| *r == 100.0), "{captured:?}");
    // A day and a bit later: folded into one 5-minute sample of the sums.
    let later = t0 + FINE_FOR_MS + COARSE_S * 1000 + 1;
    fold(&db, later).await.unwrap();
    let s = series(&db, "a", 0).await.unwrap();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0].at_ms, s[0].res_s, s[0].applied_bytes, s[0].records),
        (t0, COARSE_S, 2900, 29)
    );
    assert_eq!(s[0].journal_bytes, 1000 + 100 * 29);
    // Past 30 days: gone.
    fold(&db, t0 + KEEP_MS + 1).await.unwrap();
    assert!(series(&db, "a", 0).await.unwrap().is_empty());
    // The forecast's fit over 40 minutes of a group's samples (1 MiB a minute), and over its
    // target's sum.
    let mib = 1i64 << 20;
    let base = t0 + KEEP_MS + 3_600_000;
    insert_group(&db, "c", 1000, 1).await;
    for m in 0..=40 {
        sqlx::query(
            "INSERT INTO group_samples (group_name, res_s, at_ms, rpo_ms, rpo_target_ms, \
             journal_bytes, durable_seq, applied_bytes, records) \
             VALUES ('c', $1, $2, 0, 0, $3, 0, 0, 0)",
        )
        .bind(RES_S)
        .bind(base + m * 60_000)
        .bind(m * mib)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let now = base + 40 * 60_000;
    let row = groups(&db, now, Some("c")).await.unwrap().pop().unwrap();
    let f = forecast::gather(&db, &row, Some(600), now).await.unwrap();
    let per_h = 60.0 * mib as f64;
    for r in [f.group_rate_per_h, f.target_rate_per_h] {
        let r = r.expect("a rate from 40 minutes of samples");
        assert!((r - per_h).abs() / per_h < 0.01, "{r} vs {per_h}");
    }
}

#[test]
fn samples_record_fold_and_expire_on_both_backends() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for b in Backend::all() {
        eprintln!("backend {}", b.name());
        let work = scratch();
        rt.block_on(check(&b.url(work.path())));
    }
}
