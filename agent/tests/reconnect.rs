//! The target crashes (kill -9) while an ext4 workload writes through the agent: the agent keeps
//! capturing, reconnects with backoff once the target is back, resends everything after the
//! target's durable seq, and the replica converges to the source byte for byte.

mod common;

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn target_crash_and_restart_converges() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "g3", &[("d0", &img)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let mnt = w.join("m");
    let mut mount = Mount::new(&dev, &mnt);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mnt = mnt.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let data = vec![(i % 251) as u8; 256 << 10];
                fs::write(mnt.join(format!("f{}", i % 40)), &data).expect("write a file");
                if i % 10 == 9 {
                    let _ = Command::new("sync").arg("-f").arg(&mnt).status();
                }
                i += 1;
            }
            i
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    mtd.kill9();
    let acked_at_crash = agent.status().acked_seq;
    // Writes go on while the target is down.
    std::thread::sleep(Duration::from_millis(1500));
    let st = agent.status();
    assert!(
        !st.connected,
        "the agent noticed the target is gone: {st:?}"
    );
    assert!(
        st.last_seq > acked_at_crash,
        "writes were captured meanwhile: {st:?}"
    );
    mtd.restart();
    let t0 = Instant::now();
    while !agent.status().connected {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "agent did not reconnect:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let files = writer.join().expect("writer");
    assert!(files > 0);
    mount.umount();

    agent.wait_caught_up(Duration::from_secs(120));
    agent.stop();
    let latest = mtd.stop_and_check_latest("g3", "d0", &img);
    assert_fsck_clean(&latest);
}

/// The target is down while the workload writes more than the memory queue holds: the rest
/// goes to the spool, nothing is dropped, and the agent catches up once the target is back.
#[test]
fn target_outage_spools_then_catches_up() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
    let mut mtd = Mtd::start(w);
    let opts = ["--max-queue-mib", "16", "--spool-mib", "128"];
    let agent = Agent::start(w, "g6", &[("d0", &img)], &mtd.target(), &opts);
    agent.wait_caught_up(Duration::from_secs(60));
    mtd.stop();
    write_random_mib(&agent.link("d0"), 0, 64, 1);
    let st = agent.fresh_status();
    assert!(!st.bitmap_mode && st.dropped_writes == 0, "{st:?}");
    assert!(
        st.spooled_bytes >= 32 << 20,
        "the spool holds what memory could not: {st:?}"
    );
    assert!(fs::metadata(agent.state.join("g6.spool")).unwrap().len() >= 32 << 20);
    mtd.restart();
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert_eq!((st.spooled_bytes, st.dropped_writes), (0, 0), "{st:?}");
    drop(agent);
    mtd.stop_and_check_latest("g6", "d0", &img);
}

/// Polls `f` until it returns something.
fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < until, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With a spool too small for the outage, the agent goes to bitmap mode (the workload keeps its
/// speed; writes are tracked as dirty regions), then resyncs those regions once the target is
/// back, and converges; the target reports the points of the resync as not recoverable.
#[test]
fn tiny_spool_goes_to_bitmap_mode_and_converges() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
    let mut mtd = Mtd::start(w);
    let opts = ["--max-queue-mib", "16", "--spool-mib", "8"];
    let agent = Agent::start(w, "g7", &[("d0", &img)], &mtd.target(), &opts);
    agent.wait_caught_up(Duration::from_secs(60));
    write_random_mib(&agent.link("d0"), 200, 4, 9);
    agent.wait_caught_up(Duration::from_secs(60));
    mtd.stop();
    write_random_mib(&agent.link("d0"), 0, 96, 2);
    let st = agent.fresh_status();
    assert!(st.bitmap_mode && st.dropped_writes > 0, "{st:?}");
    assert_eq!(
        st.sync,
        rewind_agent::state::status::SyncState::Bitmap,
        "{st:?}"
    );
    assert!(st.pinned_regions > 0, "{st:?}");
    // No tag now: the point it would name lacks the dropped writes.
    let out = Command::new(bin("rewind-agent"))
        .arg("tag")
        .arg("--state-dir")
        .arg(&agent.state)
        .args(["--name", "during-bitmap-mode", "--no-wait"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bitmap mode"), "{err}");
    mtd.restart();
    // The agent reports its mode to the target (CONTROL op report), where a site sees it: what
    // it owes first (bitmap mode, then the resync), streaming once converged.
    let reported_mode = |mtd: &Mtd| {
        let (_, body) = mtd.control_get("/v1/groups");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["groups"].as_array().and_then(|gs| {
            gs.iter()
                .find(|g| g["name"] == "g7")
                .and_then(|g| g["agent"]["report"]["mode"].as_str().map(str::to_string))
        })
    };
    let first = wait_until(Duration::from_secs(30), || reported_mode(&mtd));
    assert!(
        first == "bitmap" || first == "resync",
        "the first report after the outage says what is owed: {first}"
    );
    // Writes go on while the resync runs.
    write_random_mib(&agent.link("d0"), 150, 8, 3);
    let st = agent.wait_caught_up(Duration::from_secs(180));
    assert!(!st.bitmap_mode && st.pinned_regions == 0, "{st:?}");
    wait_until(Duration::from_secs(15), || {
        (reported_mode(&mtd).as_deref() == Some("streaming")).then_some(())
    });
    assert!(
        mtd.log_text().contains("agent reports a new mode"),
        "the target logs each change of mode"
    );
    assert_eq!(st.sync_kind.as_deref(), Some("resync"), "{st:?}");
    assert!(
        st.disks[0].sync_sent_bytes < 128 << 20,
        "only the dropped regions were resent: {st:?}"
    );
    let points = run_ok(
        Command::new(bin("rewind"))
            .arg("--control")
            .arg(&mtd.control)
            .args(["points", "g7", "--json"]),
    );
    let text = String::from_utf8_lossy(&points.stdout);
    assert!(
        text.contains("resync"),
        "the resync window is reported: {text}"
    );
    drop(agent);
    mtd.stop_and_check_latest("g7", "d0", &img);
}
