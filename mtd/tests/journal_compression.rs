//! The compressed journal (issue 16) through the real binaries: compressible records cost less
//! journal than their bytes, and every point reads back byte for byte: from sealed and open
//! segments, after a kill -9 (the open segment's scan), after the merger replayed compressed
//! records into the base, and after more writes and a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn compressible_records_cost_less_and_read_back_exactly() {
    let work = tempdir();
    let mut d = Mtd::start_engine(
        work.path(),
        "uring",
        &[
            "--retention",
            "4s",
            "--seal-after",
            "1s",
            "--merge-interval",
            "200ms",
            "--segment-size",
            "1MiB",
        ],
    );
    // 48 KiB records: one and a half zstd frames each, so reads straddle frames and records.
    let wl = Workload {
        group: "db01".into(),
        disks: vec!["sda:8MiB".into()],
        seed: 7,
        pattern: "random",
        record_size: "48KiB",
        payload: "compressible",
    };
    // 128 records (6 MiB), tagged every 32.
    run_ok(wl.run_cmd(&d.target(), "6MiB").args(["--tag-every", "32"]));
    let g = group_json(&inspect(&d.data_dir), "db01").clone();
    assert_eq!(g["durable_seq"], 128);
    let journal = g["journal_bytes"].as_u64().unwrap();
    // Raw, they would take over 6 MiB (and chunk headers on top).
    assert!(
        journal < 4 << 20,
        "6 MiB of compressible records took {journal} journal bytes"
    );

    let img = work.path().join("p.img");
    let check = |d: &Mtd, at: &str, seq: u64| {
        assert_ok(
            &dump(&d.data_dir, "db01", "sda", at, &img),
            &format!("dump {at}"),
        );
        assert_ok(
            &wl.verify(&img, 0, seq),
            &format!("verify {at} (seq {seq})"),
        );
    };
    for (at, seq) in [
        ("tag:t32", 32),
        ("seq:77", 77),
        ("tag:t96", 96),
        ("latest", 128),
    ] {
        check(&d, at, seq);
    }
    assert!(
        !wl.verify(&img, 0, 96).status.success(),
        "verify cannot tell seq 96 from 128"
    );

    // A crash: the open segment is scanned (its chunks verified by their crcs) at start.
    d.kill9();
    d.restart();
    check(&d, "latest", 128);
    check(&d, "tag:t64", 64);

    // The window passes: compressed records are decompressed into the base image.
    let t0 = Instant::now();
    while group_json(&inspect(&d.data_dir), "db01")["horizon_seq"]
        .as_u64()
        .unwrap()
        < 128
    {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "merger never moved the horizon"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    check(&d, "latest", 128);

    // More writes on top of the merged base, then a clean restart (sealed footers).
    run_ok(&mut wl.run_cmd(&d.target(), "9MiB"));
    d.terminate();
    d.restart();
    check(&d, "latest", 192);
    d.terminate();
}

/// The `--json` summary of a load generator run.
fn run_json(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = run_ok(cmd.arg("--json"));
    serde_json::from_slice(&out.stdout).expect("the load generator's --json line")
}

/// Framed records (the agent compresses each record as the journal stores it, the target
/// stores it as it comes): granted by a target that compresses its journal, stored compressed,
/// every point reads back exactly, after a kill -9 and a restart too; an old-style sender
/// (plain records) on the same target still gets its records compressed by the target.
#[test]
fn framed_records_are_stored_as_sent_and_read_back_exactly() {
    let work = tempdir();
    let mut d = Mtd::start_with(
        work.path(),
        &["--seal-after", "1s", "--segment-size", "2MiB"],
    );
    // 64 KiB records at 32 KiB boundaries of the pool: copied from the pre-encoded pool frames.
    let pooled = Workload {
        group: "framed".into(),
        disks: vec!["sda:8MiB".into()],
        seed: 11,
        pattern: "random",
        record_size: "64KiB",
        payload: "compressible-frames",
    };
    // 48 KiB records anywhere in the pool: encoded record by record (1.5 frames each).
    let live = Workload {
        group: "live".into(),
        record_size: "48KiB",
        payload: "compressible",
        ..pooled.clone()
    };
    // And an agent of the old kind: plain records, compressed by the target.
    let plain = Workload {
        group: "plain".into(),
        ..live.clone()
    };
    for (wl, total, compression) in [
        (&pooled, "6MiB", "framed"),
        (&live, "6MiB", "framed"),
        (&plain, "6MiB", "zstd"),
    ] {
        let s = run_json(wl.run_cmd(&d.target(), total).args([
            "--compression",
            compression,
            "--tag-every",
            "32",
        ]));
        assert_eq!(s["framed"], compression == "framed", "{}: {s}", wl.group);
        let g = group_json(&inspect(&d.data_dir), &wl.group).clone();
        let journal = g["journal_bytes"].as_u64().unwrap();
        assert!(
            journal < 4 << 20,
            "{}: 6 MiB of compressible records took {journal} journal bytes",
            wl.group
        );
    }
    let img = work.path().join("p.img");
    let check = |d: &Mtd, wl: &Workload, at: &str, seq: u64| {
        assert_ok(
            &dump(&d.data_dir, &wl.group, "sda", at, &img),
            &format!("dump {} at {at}", wl.group),
        );
        assert_ok(
            &wl.verify(&img, 0, seq),
            &format!("verify {} at {at} (seq {seq})", wl.group),
        );
    };
    let last = |wl: &Workload| if wl.record_size == "64KiB" { 96 } else { 128 };
    for wl in [&pooled, &live, &plain] {
        check(&d, wl, "tag:t32", 32);
        check(&d, wl, "latest", last(wl));
    }
    // A crash: the open segments are scanned (framed records' crcs checked) at start.
    d.kill9();
    d.restart();
    for wl in [&pooled, &live, &plain] {
        check(&d, wl, "latest", last(wl));
        check(&d, wl, "tag:t64", 64);
    }
    // More framed records after the restart, then a clean restart.
    let s = run_json(
        pooled
            .run_cmd(&d.target(), "9MiB")
            .args(["--compression", "framed"]),
    );
    assert_eq!(s["framed"], true, "{s}");
    d.terminate();
    d.restart();
    check(&d, &pooled, "latest", 144);
    d.terminate();
}

/// A target that stores its journal raw does not grant framed records: the sender falls back
/// to plain records, and they read back exactly.
#[test]
fn a_target_without_journal_compression_does_not_grant_framed_records() {
    let work = tempdir();
    let mut d = Mtd::start_with(work.path(), &["--journal-compression", "off"]);
    let wl = Workload {
        group: "raw".into(),
        disks: vec!["sda:8MiB".into()],
        seed: 3,
        pattern: "seq",
        record_size: "64KiB",
        payload: "compressible-frames",
    };
    let s = run_json(
        wl.run_cmd(&d.target(), "2MiB")
            .args(["--compression", "framed"]),
    );
    assert_eq!(s["framed"], false, "{s}");
    let journal = group_json(&inspect(&d.data_dir), "raw")["journal_bytes"]
        .as_u64()
        .unwrap();
    assert!(journal >= 2 << 20, "stored raw: {journal} bytes");
    let img = work.path().join("p.img");
    assert_ok(&dump(&d.data_dir, "raw", "sda", "latest", &img), "dump");
    assert_ok(&wl.verify(&img, 0, 32), "verify");
    d.terminate();
}
