//! Power cuts of the target: its data dir on the power-cut file system, kill -9 under load and
//! drop everything not fsynced (file bytes and directory entries), restart, and check that every
//! acknowledged seq is durable and reads back as the model says, that the manifest, tags and
//! overlays open, and that nothing is reported that does not exist. Then the overlay ordering:
//! a block's bitmap bit is never durable before its data.
//!
//! `REWIND_POWERCUT_ROUNDS` (default 4) sets the cuts per io engine.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;

/// Restart after a cut; if the daemon refuses to start, show why (the harness shows only the
/// tail of the log, which a backtrace fills).
fn restart(d: &mut Mtd) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.restart()));
    if let Err(p) = r {
        for l in d.log_text().lines().filter(|l| l.contains("rror")) {
            eprintln!("daemon: {l}");
        }
        std::panic::resume_unwind(p);
    }
}

fn campaign(engine: &str) {
    let rounds = powercut_rounds(4);
    let work = tempdir();
    // Declared before the daemon: dropped (unmounted) after it stops.
    let Some(mut pc) = powercut_mount(work.path(), "data") else {
        return;
    };
    let wl = Workload {
        group: "pc".into(),
        disks: vec!["sda:16MiB".into(), "sdb:8MiB".into()],
        seed: rand::thread_rng().gen(),
        pattern: "random",
        record_size: "4KiB",
        payload: "compressible",
    };
    eprintln!("power-cut campaign ({engine}) seed {}", wl.seed);
    // Small segments: creates, seals, renames and directory syncs all happen between cuts.
    let mut d = Mtd::start_engine(work.path(), engine, &["--segment-size", "1MiB"]);
    let state = work.path().join("loadgen.state");
    let mut lg = Proc::spawn(
        wl.run_cmd(&d.target(), "1TiB")
            .args(["--reconnect", "--reconnect-timeout", "120s"])
            .args(["--batch-bytes", "128KiB", "--tag-every", "500", "--state"])
            .arg(&state),
    );
    let t0 = Instant::now();
    while acked(&state) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "nothing acknowledged in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // An overlay, made durable by its creation: it must open after every cut.
    let first = acked(&state);
    run_ok(
        d.rewind_cmd()
            .args(["overlay", "create", "ov", &format!("pc/sda@seq:{first}")]),
    );

    let mut rng = rand::thread_rng();
    let mut lost = 0u64;
    let mut acked_at_cut = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..900)));
        d.kill9();
        let a = acked(&state);
        acked_at_cut.push(a);
        let dropped = pc.cut().expect("power cut");
        restart(&mut d);
        let report = inspect(&d.data_dir);
        let g = group_json(&report, "pc");
        let durable = g["durable_seq"].as_u64().unwrap();
        eprintln!(
            "round {round}: acked {a}, durable after the cut {durable}; the cut dropped {} bytes, {} entries, {} inodes",
            dropped.bytes, dropped.entries, dropped.inodes
        );
        if durable < a {
            eprintln!(
                "round {round}: LOST acknowledged seqs {}..={a}",
                durable + 1
            );
            lost += a - durable;
        }
        // Nothing reported that does not exist: every tag is at a durable seq.
        for t in g["tags"].as_array().into_iter().flatten() {
            let seq = t["seq"].as_u64().unwrap();
            assert!(
                seq <= durable,
                "round {round}: tag {t} past durable {durable}"
            );
        }
        let overlays = d.rewind(&["overlay", "list"]);
        assert!(
            overlays.contains("ov"),
            "round {round}: overlay gone: {overlays}"
        );
    }
    let before = acked(&state);
    let t0 = Instant::now();
    while acked(&state) <= before && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(lg.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    let final_acked = acked(&state);
    d.kill9();
    pc.cut().expect("last power cut");
    assert!(final_acked > before, "no progress after the last cut");

    // Every acknowledged point reads back as the model says.
    let g = group_json(&inspect(&d.data_dir), "pc").clone();
    let durable = g["durable_seq"].as_u64().unwrap();
    lost += final_acked.saturating_sub(durable);
    let mut seqs: Vec<u64> = acked_at_cut.clone();
    seqs.extend([final_acked.min(durable), first]);
    seqs.retain(|&s| s > 0 && s <= durable);
    seqs.sort_unstable();
    seqs.dedup();
    for seq in seqs {
        for (i, disk) in ["sda", "sdb"].iter().enumerate() {
            let img = work.path().join(format!("{disk}-{seq}.img"));
            assert_ok(
                &dump(&d.data_dir, "pc", disk, &format!("seq:{seq}"), &img),
                "dump",
            );
            let v = wl.verify(&img, i, seq);
            if !v.status.success() {
                eprintln!(
                    "{disk} at seq {seq} differs from the model: {}",
                    String::from_utf8_lossy(&v.stdout)
                );
                lost += 1;
            }
            std::fs::remove_file(&img).unwrap();
        }
    }
    if let Some(tag) = g["tags"].as_array().and_then(|t| t.last()) {
        let img = work.path().join("tag.img");
        let name = tag["name"].as_str().unwrap();
        assert_ok(
            &dump(&d.data_dir, "pc", "sda", &format!("tag:{name}"), &img),
            "dump tag",
        );
        assert_ok(
            &wl.verify(&img, 0, tag["seq"].as_u64().unwrap()),
            "verify the last tag",
        );
    }
    print_powercut_result(&format!("mtd-{engine}"), rounds, lost);
    assert_eq!(lost, 0, "acknowledged seqs lost to power cuts");
}

#[test]
fn powercut_target_sync_engine() {
    campaign("sync");
}

#[test]
fn powercut_target_uring_engine() {
    campaign("uring");
}

/// Every directory under `dir`, as paths relative to it, sorted.
fn directories(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every directory the daemon makes in its data dir is durable before it is used: after a
/// start, some writes, a kill and a power cut, all are still there (the failover directory,
/// where test failovers and promotions are saved, once was dropped by every cut).
#[test]
fn data_dir_directories_survive_a_power_cut() {
    let work = tempdir();
    let Some(mut pc) = powercut_mount(work.path(), "data") else {
        return;
    };
    let mut d = Mtd::start_engine(work.path(), "sync", &[]);
    let wl = Workload {
        group: "g".into(),
        disks: vec!["sda:1MiB".into()],
        seed: 3,
        pattern: "seq",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "256KiB"));
    let before = directories(&d.data_dir);
    assert!(before.iter().any(|p| p.ends_with("failover")), "{before:?}");
    d.kill9();
    pc.cut().expect("power cut");
    assert_eq!(directories(&d.data_dir), before);
    restart(&mut d);
    drop(d);
    drop(pc);
}

/// A test failover started (acknowledged) before a power cut is still there after it, and
/// refuses a second one: the failover state opens after a cut.
#[test]
fn a_test_failover_survives_a_power_cut() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let Some(mut pc) = powercut_mount(work.path(), "data") else {
        return;
    };
    let views = work.path().join("views");
    let mut d = Mtd::start_engine(work.path(), "sync", &["--views", views.to_str().unwrap()]);
    let wl = Workload {
        group: "g".into(),
        disks: vec!["sda:4MiB".into()],
        seed: 9,
        pattern: "seq",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "1MiB"));
    let r = d.rewind_json(&["failover", "test", "g"]);
    assert_eq!(r["test"]["seq"].as_u64(), Some(256), "{r}");
    d.kill9();
    pc.cut().expect("power cut");
    restart(&mut d);
    let st = d.rewind_json(&["failover", "status"]);
    assert!(
        st.to_string().contains("\"test\""),
        "the test failover is gone after the cut: {st}"
    );
    let e = d.rewind_fails(&["failover", "test", "g"]);
    assert!(e.contains("already has a test failover"), "{e}");
    d.rewind(&["failover", "cleanup", "g"]);
    drop(d);
    drop(pc);
}

const BLOCKS: u64 = 4096; // the 16 MiB disk
const WRITERS: u64 = 4;

/// Block `b`'s content in the overlay (never all zeros, never the point's bytes).
fn pattern(b: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(4096);
    while v.len() < 4096 {
        v.extend_from_slice(&b.to_le_bytes());
        v.extend_from_slice(&0x6f76_6572_6c61_7921u64.to_le_bytes());
    }
    v
}

/// Writers fill a fresh overlay through the view tree, each block once (so every write sets a
/// new bitmap bit), while another thread fsyncs it; the power-cut fs makes each fsync return
/// only after writes made during it completed. Then a power cut: every block must read as the
/// point or as its write, and as its write if a completed fsync began after it. A durable bit
/// over data that was not (the bug this guards: the block reads as zeros) fails.
#[test]
fn overlay_bits_are_never_durable_before_their_data() {
    let work = tempdir();
    let Some(mut pc) = powercut_mount(work.path(), "data") else {
        return;
    };
    let views = work.path().join("views");
    let mut d = Mtd::start_engine(work.path(), "sync", &["--views", views.to_str().unwrap()]);
    let wl = Workload {
        group: "g".into(),
        disks: vec!["sda:16MiB".into()],
        seed: 5,
        pattern: "seq",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "16MiB"));
    let point = work.path().join("point.img");
    assert_ok(&dump(&d.data_dir, "g", "sda", "seq:4096", &point), "dump");
    let point = std::fs::read(&point).unwrap();
    // Writes that land while a flush syncs the data complete before the sync returns.
    pc.set_sync_delay(Duration::from_millis(20));

    // Several cuts, each restart soon after the kill: the dead view tree is then still within
    // its root's attribute TTL, so stat of it succeeds from the kernel's cache; the daemon must
    // still see it as dead (it once refused to start: "already a mount point").
    for round in 0..powercut_rounds(4).min(6) {
        let name = format!("c{round}");
        run_ok(
            d.rewind_cmd()
                .args(["overlay", "create", &name, "g/sda@seq:4096"]),
        );
        let file = views.join(format!("g/sda/overlays/{name}.img"));
        let written: Arc<Vec<AtomicBool>> =
            Arc::new((0..BLOCKS).map(|_| AtomicBool::new(false)).collect());
        let mut threads = Vec::new();
        for t in 0..WRITERS {
            let (file, written) = (file.clone(), written.clone());
            threads.push(std::thread::spawn(move || {
                let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
                for b in (t..BLOCKS).step_by(WRITERS as usize) {
                    if f.write_all_at(&pattern(b), b * 4096).is_err() {
                        return;
                    }
                    written[b as usize].store(true, Ordering::SeqCst);
                }
            }));
        }
        // The flusher: what was written before an fsync started is durable once it returns.
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        let mut durable = vec![false; BLOCKS as usize];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(600) {
            let seen: Vec<bool> = written.iter().map(|w| w.load(Ordering::SeqCst)).collect();
            f.sync_all().unwrap();
            durable = seen;
        }
        drop(f);
        d.kill9();
        for t in threads {
            t.join().unwrap();
        }
        pc.cut().expect("power cut");
        restart(&mut d);
        let bytes = std::fs::read(&file).unwrap();
        let mut bad = Vec::new();
        for b in 0..BLOCKS as usize {
            let got = &bytes[b * 4096..(b + 1) * 4096];
            let ok = got == pattern(b as u64).as_slice()
                || (got == &point[b * 4096..(b + 1) * 4096] && !durable[b]);
            if !ok {
                bad.push((b, durable[b], got.iter().all(|&x| x == 0)));
            }
        }
        let n = durable.iter().filter(|&&x| x).count();
        eprintln!(
            "round {round}: {n} blocks flushed before the cut, {} wrong",
            bad.len()
        );
        assert!(
            bad.is_empty(),
            "round {round}: blocks (block, flushed, reads as zeros) wrong after the cut: {:?}",
            &bad[..bad.len().min(20)]
        );
    }
    drop(d);
    drop(pc);
}
