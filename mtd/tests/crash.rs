//! Crash safety: kill -9 the daemon at random moments while the load generator streams, restart,
//! and prove that every acknowledged seq reads back exactly as the model says.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rand::Rng;

/// The daemon keeps this much history, and the load generator sends at [`RATE`]: unpaced it
/// wrote over 100 MB/s here, faster than the merger folds 4 KiB random records into the base
/// between kills half a second apart, so a campaign of 1000 rounds kept about 130 MB of journal
/// per round; at 24 MiB/s it still outran a merger sharing two cores with other work (60 s
/// unkilled took it from 200 segments to 125 only). Merging runs all along, which the campaign
/// then covers too.
const RETENTION: Duration = Duration::from_secs(20);
const RATE: &str = "8MiB";

/// Kill/restart rounds per engine: 20 in the suite; `scripts/bench.sh crash` asks for more.
fn rounds() -> usize {
    std::env::var("REWIND_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Journal segments past which the kills pause until the merger is back under half of it.
const MAX_SEGMENTS: usize = 200;

/// Kills every half second leave the merger little time: each restart first finishes the
/// interrupted merge and rebuilds the index, and the journal outgrows the retention window (a
/// campaign of hundreds of rounds filled the disk). When it holds more than [`MAX_SEGMENTS`],
/// let the daemon run unkilled, under load, until the merger has caught up (at most a minute).
fn merger_breather(d: &Mtd, round: usize, pauses: &mut u64) {
    let journal = d.data_dir.join("groups/crash/journal");
    let segments = || std::fs::read_dir(&journal).map_or(0, |r| r.count());
    if segments() <= MAX_SEGMENTS {
        return;
    }
    *pauses += 1;
    let t0 = Instant::now();
    while segments() > MAX_SEGMENTS / 2 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "round {round}: paused the kills {:.1} s for the merger ({} segments left)",
        t0.elapsed().as_secs_f64(),
        segments()
    );
}

fn crash_rounds(engine: &str) {
    let rounds = rounds();
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
    let retention = format!("{}s", RETENTION.as_secs());
    let mut d = Mtd::start_engine(
        work.path(),
        engine,
        &["--segment-size", "4MiB", "--retention", &retention],
    );
    let state = work.path().join("loadgen.state");
    let mut lg = Proc::spawn(
        wl.run_cmd(&d.target(), "1TiB")
            .args([
                "--reconnect",
                "--reconnect-timeout",
                "60s",
                "--batch-bytes",
                "256KiB",
                "--tag-every",
                "1000",
                "--rate",
                RATE,
                "--state",
            ])
            .arg(&state),
    );
    // The group exists (and something is acknowledged) before the first kill: on a loaded
    // machine the load generator may take a while to connect.
    let t0 = Instant::now();
    while acked(&state) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing acknowledged in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rng = rand::thread_rng();
    let mut acked_before_kill = Vec::new();
    let mut breathers = 0;
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        d.kill9();
        acked_before_kill.push((Instant::now(), acked(&state)));
        if rng.gen_bool(0.3) {
            std::thread::sleep(Duration::from_millis(rng.gen_range(10..300)));
        }
        d.restart();
        // Everything acknowledged before the kill must have survived it.
        let durable = group_json(&inspect(&d.data_dir), "crash")["durable_seq"]
            .as_u64()
            .unwrap();
        let a = acked_before_kill.last().unwrap().1;
        assert!(
            durable >= a,
            "round {round}: target durable seq {durable} < acknowledged seq {a}"
        );
        merger_breather(&d, round, &mut breathers);
    }
    eprintln!("{breathers} pauses for the merger in {rounds} rounds");
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
        acked_before_kill.iter().any(|&(_, a)| a > 0),
        "nothing was ever acknowledged"
    );

    let report = inspect(&d.data_dir);
    let g = group_json(&report, "crash");
    let durable = g["durable_seq"].as_u64().unwrap();
    assert!(
        durable >= final_acked,
        "durable {durable} < acked {final_acked}"
    );

    // Several points: the final acked seq, the durable one, a tag, and the seqs acknowledged
    // before the oldest and a middle kill still well inside the retention window (older ones
    // may be merged into the base by now: every round's survival was checked as it ended).
    let recent: Vec<u64> = acked_before_kill
        .iter()
        .filter(|(at, _)| at.elapsed() < RETENTION / 2)
        .map(|&(_, a)| a)
        .collect();
    let mut seqs: Vec<u64> = vec![final_acked, durable];
    seqs.extend(recent.first());
    seqs.extend(recent.get(recent.len() / 2));
    seqs.retain(|&s| s > 0);
    seqs.sort_unstable();
    seqs.dedup();
    eprintln!(
        "verifying seqs {seqs:?} ({} of {rounds} kills recent)",
        recent.len()
    );
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
        rounds + 1,
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

/// A torn tail (the last chunk's data not matching its checksum) is cut off at start-up with a log
/// line saying where, and everything before it reads back exactly.
#[test]
fn torn_segment_tail_is_truncated_and_logged() {
    use rewind_formats::segment::{decode_chunk_header, peek_chunk, CHUNK_PREFIX_LEN};
    use std::os::unix::fs::FileExt;

    let work = tempdir();
    let mut d = Mtd::start_engine(work.path(), "sync", &[]);
    let wl = Workload {
        group: "torn".into(),
        disks: vec!["sda:4MiB".into()],
        seed: 3,
        pattern: "seq",
        record_size: "4KiB",
        payload: "random",
    };
    // 256 records in batches of 16: 16 chunks in one open segment.
    run_ok(
        wl.run_cmd(&d.target(), "1MiB")
            .args(["--batch-bytes", "64KiB"]),
    );
    d.terminate();

    let seg = d.data_dir.join("groups/torn/journal/seg-00000001.rwj");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut pos = rewind_formats::BLOCK as u64;
    let mut last = None;
    loop {
        let mut prefix = [0u8; CHUNK_PREFIX_LEN];
        if f.read_exact_at(&mut prefix, pos).is_err() || prefix.iter().all(|&b| b == 0) {
            break;
        }
        let p = peek_chunk(&prefix).unwrap();
        let mut chunk = vec![0u8; p.total_len as usize];
        f.read_exact_at(&mut chunk, pos).unwrap();
        last = Some((pos, decode_chunk_header(&chunk).unwrap()));
        pos += p.total_len;
    }
    let (last_pos, last_hdr) = last.expect("chunks in the open segment");
    assert_eq!(last_hdr.last_seq.0, 256);
    let first_data = last_pos + last_hdr.records[0].data_pos;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, first_data + 100).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], first_data + 100).unwrap();
    drop(f);

    d.restart();
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("truncating torn segment tail")
                && l.contains(&format!("offset {last_pos}"))),
        "no log line about the torn tail at {last_pos}:\n{log}"
    );
    let first_lost = last_hdr.first_seq.0;
    let g = group_json(&inspect(&d.data_dir), "torn").clone();
    assert_eq!(g["durable_seq"].as_u64(), Some(first_lost - 1));
    let img = work.path().join("after.img");
    assert_ok(&dump(&d.data_dir, "torn", "sda", "latest", &img), "dump");
    assert_ok(
        &wl.verify(&img, 0, first_lost - 1),
        "verify up to the torn chunk",
    );
    // The agent resends from there and the replica converges.
    run_ok(&mut wl.run_cmd(&d.target(), "1MiB"));
    assert_ok(&dump(&d.data_dir, "torn", "sda", "latest", &img), "dump");
    assert_ok(&wl.verify(&img, 0, 256), "verify after resend");
}
