//! End to end through the real binaries: stream, tag, read points back byte for byte, then let
//! retention merge the journal into the base and check old points are refused and new ones intact.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn stream_points_and_retention(engine: &str) {
    let work = tempdir();
    let mut d = Mtd::start_engine(
        work.path(),
        engine,
        &[
            "--retention",
            "3s",
            "--seal-after",
            "1s",
            "--merge-interval",
            "200ms",
            "--segment-size",
            "1MiB",
        ],
    );
    let wl = Workload {
        group: "web01".into(),
        disks: vec!["sda:8MiB".into()],
        seed: 42,
        pattern: "seq",
        record_size: "4KiB",
        payload: "random",
    };
    // 512 records, tagged every 128: tags t128 .. t512.
    let out = run_ok(
        wl.run_cmd(&d.target(), "2MiB")
            .args(["--tag-every", "128", "--json"]),
    );
    let summary: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary["acked_seq"].as_u64(),
        Some(512),
        "summary: {summary}"
    );

    let g = group_json(&inspect(&d.data_dir), "web01").clone();
    assert_eq!(g["durable_seq"], 512);
    assert_eq!(g["extents"], 512);
    assert!(g["index_bytes"].as_u64().unwrap() > 0);
    // 2 MiB of records into 1 MiB segments: a segment that reached the size is sealed (a group
    // commit may overshoot the size, so how many segments there are depends on timing).
    assert!(
        g["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["state"] == "sealed"),
        "a full segment must have been sealed: {g}"
    );
    let tags: Vec<&str> = g["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["t128", "t256", "t384", "t512"]);

    for (at, seq) in [
        ("tag:t128", 128),
        ("seq:300", 300),
        ("latest", 512),
        ("tag:t512", 512),
    ] {
        let img = work.path().join("p.img");
        assert_ok(
            &dump(&d.data_dir, "web01", "sda", at, &img),
            &format!("dump {at}"),
        );
        assert_ok(&wl.verify(&img, 0, seq), &format!("verify {at}"));
        // The model must tell points apart: an early point is not the latest.
        if seq == 128 {
            assert!(
                !wl.verify(&img, 0, 512).status.success(),
                "verify cannot tell seq 128 from 512"
            );
        }
    }
    // Time points: now resolves to latest; a time before anything is an error.
    let img = work.path().join("t.img");
    assert_ok(
        &dump(&d.data_dir, "web01", "sda", "-0s", &img),
        "dump at now",
    );
    assert_ok(&wl.verify(&img, 0, 512), "verify at now");
    let out = dump(&d.data_dir, "web01", "sda", "2001-01-01T00:00:00Z", &img);
    assert!(!out.status.success());
    // Bad names are clear errors.
    let out = dump(&d.data_dir, "nope", "sda", "latest", &img);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown group nope"));
    let out = dump(&d.data_dir, "web01", "sdz", "latest", &img);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown disk sdz"));
    let out = dump(&d.data_dir, "web01", "sda", "yesterday", &img);
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad point"));

    // Let the window pass: segments seal, expire and merge into the base.
    let t0 = Instant::now();
    loop {
        let g = group_json(&inspect(&d.data_dir), "web01").clone();
        if g["horizon_seq"].as_u64().unwrap() > 128 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "merger never moved the horizon: {g}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = dump(&d.data_dir, "web01", "sda", "tag:t128", &img);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("older than the retention horizon") || err.contains("no tag"),
        "{err}"
    );
    assert_ok(
        &dump(&d.data_dir, "web01", "sda", "latest", &img),
        "dump latest after merge",
    );
    assert_ok(&wl.verify(&img, 0, 512), "verify latest after merge");

    // More writes after the merge (resume at the durable seq), then latest is still exact,
    // also across a restart that rebuilds the index from footers.
    run_ok(&mut wl.run_cmd(&d.target(), "3MiB"));
    d.terminate();
    d.restart();
    assert_ok(
        &dump(&d.data_dir, "web01", "sda", "latest", &img),
        "dump latest",
    );
    assert_ok(
        &wl.verify(&img, 0, 768),
        "verify latest after more writes and a restart",
    );
    let g = group_json(&inspect(&d.data_dir), "web01").clone();
    assert_eq!(g["durable_seq"], 768);
    d.terminate();
}

#[test]
fn stream_points_and_retention_uring() {
    stream_points_and_retention("uring");
}

#[test]
fn stream_points_and_retention_sync() {
    stream_points_and_retention("sync");
}

#[test]
fn second_daemon_on_same_data_dir_is_refused() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "uring", &[]);
    let out = run(Command::new(bin("rewind-mtd"))
        .args(["serve", "--unix"])
        .arg(work.path().join("other.sock"))
        .arg("--data-dir")
        .arg(&d.data_dir));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another rewind-mtd"));
}
