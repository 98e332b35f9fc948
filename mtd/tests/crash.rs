//! Crash safety: kill -9 the daemon at random moments while the load generator streams, restart,
//! and prove that every acknowledged seq reads back exactly as the model says.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;

const ROUNDS: usize = 20;

/// The highest seq the load generator saw acknowledged (its --state file).
fn acked(state: &Path) -> u64 {
    let text = std::fs::read_to_string(state).unwrap_or_default();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        if let Some(n) = v
            .as_u64()
            .or_else(|| v["acked"].as_u64())
            .or_else(|| v["acked_seq"].as_u64())
        {
            return n;
        }
    }
    text.trim().parse().unwrap_or(0)
}

fn crash_rounds(engine: &str) {
    let work = tempdir();
    let wl = Workload {
        group: "crash".into(),
        disks: vec!["sda:32MiB".into(), "sdb:16MiB".into()],
        seed: rand::thread_rng().gen(),
        pattern: "random",
        record_size: "4KiB",
        payload: "compressible",
    };
    eprintln!("crash test ({engine}) seed {}", wl.seed);
    let mut d = Daemon::start(work.path(), engine, &["--segment-size", "4MiB"]);
    let state = work.path().join("loadgen.state");
    let mut lg = Proc::spawn(
        wl.run_cmd(&d.connect_arg(), "4GiB")
            .args([
                "--reconnect",
                "--reconnect-timeout",
                "60s",
                "--batch-bytes",
                "256KiB",
                "--tag-every",
                "1000",
                "--state",
            ])
            .arg(&state),
    );
    let mut rng = rand::thread_rng();
    let mut acked_before_kill = Vec::new();
    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        d.kill9();
        acked_before_kill.push(acked(&state));
        if rng.gen_bool(0.3) {
            std::thread::sleep(Duration::from_millis(rng.gen_range(10..300)));
        }
        d.restart();
        // Everything acknowledged before the kill must have survived it.
        let durable = group_json(&inspect(&d.data_dir), "crash")["durable_seq"]
            .as_u64()
            .unwrap();
        let a = *acked_before_kill.last().unwrap();
        assert!(
            durable >= a,
            "round {round}: target durable seq {durable} < acknowledged seq {a}"
        );
    }
    // Let it make progress after the last restart, then stop everything.
    let before = acked(&state);
    let t0 = Instant::now();
    while acked(&state) <= before && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(lg.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    let final_acked = acked(&state);
    d.kill9();
    assert!(
        final_acked > before,
        "no progress after the last restart (acked stayed {before})"
    );
    assert!(
        acked_before_kill.iter().any(|&a| a > 0),
        "nothing was ever acknowledged"
    );

    let report = inspect(&d.data_dir);
    let g = group_json(&report, "crash");
    let durable = g["durable_seq"].as_u64().unwrap();
    assert!(
        durable >= final_acked,
        "durable {durable} < acked {final_acked}"
    );

    // Several points: every acked-before-kill seq sampled, the final acked seq, and a tag.
    let mut seqs: Vec<u64> = vec![
        final_acked,
        durable,
        acked_before_kill[ROUNDS / 2],
        acked_before_kill[0],
    ];
    seqs.retain(|&s| s > 0);
    seqs.dedup();
    for seq in seqs {
        for (i, disk) in ["sda", "sdb"].iter().enumerate() {
            let img = work.path().join(format!("{disk}-{seq}.img"));
            assert_ok(
                &dump(&d.data_dir, "crash", disk, &format!("seq:{seq}"), &img),
                "dump",
            );
            assert_ok(
                &wl.verify(&img, i, seq),
                &format!("verify {disk} at seq {seq}"),
            );
            std::fs::remove_file(&img).unwrap();
        }
    }
    if let Some(tag) = g["tags"].as_array().and_then(|t| t.last()) {
        let name = tag["name"].as_str().unwrap();
        let seq = tag["seq"].as_u64().unwrap();
        let img = work.path().join("tag.img");
        assert_ok(
            &dump(&d.data_dir, "crash", "sda", &format!("tag:{name}"), &img),
            "dump tag",
        );
        assert_ok(&wl.verify(&img, 0, seq), "verify tag point");
    }
    let log = d.log_text();
    for l in log
        .lines()
        .filter(|l| l.contains("closing session") || l.contains("truncat") || l.contains("WARN"))
    {
        eprintln!("daemon: {l}");
    }
    assert_eq!(
        log.matches("listening for agents").count(),
        ROUNDS + 1,
        "daemon restarts"
    );
}

#[test]
fn crash_kill9_uring() {
    crash_rounds("uring");
}

#[test]
fn crash_kill9_sync() {
    crash_rounds("sync");
}
