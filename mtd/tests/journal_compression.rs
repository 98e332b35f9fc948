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
