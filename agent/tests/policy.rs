//! A replication policy from the target reaching a real agent: `PUT /v1/groups/G/policy` on a
//! running `rewind-mtd`, and within seconds the agent runs it (status `policy: NAME vN`, its
//! bandwidth limit holds the stream to the schedule's rate, the level and spool size are the
//! policy's), keeps it
//! in its state directory, and refuses one it cannot apply (a hook script) with an ERROR the
//! target records while the session goes on.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const GROUP: &str = "g";

fn policy(version: u64, bandwidth: &str, pre_hook: Option<&str>) -> String {
    serde_json::json!({
        "name": "gold",
        "version": version,
        "rpo_target_secs": 60,
        "retention_secs": 7200,
        "level": 7,
        "bandwidth": bandwidth,
        "spool_mib": 64,
        "pre_hook": pre_hook,
    })
    .to_string()
}

fn group_line(mtd: &Mtd) -> serde_json::Value {
    let (code, body) = mtd.control_get("/v1/groups");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["groups"].as_array().unwrap()[0].clone()
}

fn status_text(state: &Path) -> String {
    let out = run_ok(
        std::process::Command::new(bin("rewind-agent"))
            .args(["status", "--state-dir"])
            .arg(state),
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_agent_runs_the_policy_the_target_sends() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let img = work.path().join("d0.img");
    fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let agent = Agent::start(work.path(), GROUP, &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_caught_up(Duration::from_secs(60));
    let path = format!("/v1/groups/{GROUP}/policy");

    // 1 MiB/s at all times: the status shows it within seconds, and 3 MiB of incompressible
    // writes take about 3 s to reach the target.
    let (code, body) = mtd.control_put(&path, &policy(1, "*=1MiB/s", None));
    assert_eq!(code, 200, "{body}");
    let t0 = Instant::now();
    agent.wait_status(Duration::from_secs(10), |s| {
        s.policy.as_deref() == Some("gold v1")
    });
    eprintln!("policy v1 shown by the agent after {:?}", t0.elapsed());
    // The policy sizes the spool (64 MiB), whatever the command line said.
    assert_eq!(agent.fresh_status().spool_capacity_bytes, 64 << 20);
    assert!(status_text(&agent.state).contains("policy: gold v1"));
    let kept = fs::read_to_string(agent.state.join(format!("{GROUP}.policy"))).unwrap();
    assert!(kept.contains("\"version\":1"), "{kept}");
    assert_eq!(group_line(&mtd)["policy"]["delivered_version"], 1);
    let t0 = Instant::now();
    write_random_mib(&agent.link("d0"), 8, 3, 7);
    agent.wait_caught_up(Duration::from_secs(60));
    let limited = t0.elapsed();
    eprintln!("3 MiB at 1 MiB/s: caught up after {limited:?}");
    assert!(
        limited >= Duration::from_millis(2500),
        "{limited:?}: not limited"
    );
    let log = agent.log_text();
    assert!(
        log.contains("bandwidth limit from the policy's schedule"),
        "{log}"
    );
    // (Field values are coloured in the log: the message text is what can be matched.)
    assert!(log.contains("policy applied: level, bandwidth"), "{log}");
    assert!(log.contains("policy from the target applied"), "{log}");

    // v2 lifts the limit.
    let (code, body) = mtd.control_put(&path, &policy(2, "*=unlimited", None));
    assert_eq!(code, 200, "{body}");
    agent.wait_status(Duration::from_secs(10), |s| {
        s.policy.as_deref() == Some("gold v2")
    });
    let t0 = Instant::now();
    write_random_mib(&agent.link("d0"), 16, 3, 8);
    agent.wait_caught_up(Duration::from_secs(60));
    let free = t0.elapsed();
    eprintln!("3 MiB unlimited: caught up after {free:?}");
    assert!(
        free < limited,
        "unlimited {free:?} not faster than limited {limited:?}"
    );

    // A hook script this agent cannot run: refused, recorded at the target, session kept.
    let (code, body) = mtd.control_put(&path, &policy(3, "*=unlimited", Some("/bin/true")));
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = group_line(&mtd);
        if let Some(r) = g["policy"]["agent_refused"].as_str() {
            assert!(r.contains("pre_hook"), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "refusal not recorded: {g}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = agent.fresh_status();
    assert_eq!(st.policy.as_deref(), Some("gold v2"), "kept what it ran");
    assert!(st.connected, "the session ended over a refused policy");
    assert_eq!(mtd.log_text().matches("session started").count(), 1);
}

/// The policy's sync window and scheduled points, on a real agent: a window of `*=0` kept in the
/// state directory holds the initial sync (nothing of the disk reaches the target, the status says
/// a sync is pending or running) until the target sends a policy that opens it; then the sync
/// completes and the replica equals the disk. That policy's app-consistent interval then makes
/// the agent freeze the mounted filesystem and tag, every second, until a policy without it.
#[test]
fn the_policy_holds_syncs_to_its_window_and_schedules_points() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::FileExt;
    let work = tempdir();
    let mut mtd = Mtd::start(work.path());
    let img = work.path().join("d0.img");
    fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    // 8 MiB of data for the initial sync.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    let mut rng = Rng::new(5);
    for i in 0..8u64 {
        f.write_all_at(&rng.bytes(1 << 20), i << 20).unwrap();
    }
    drop(f);
    // A policy kept from an earlier run: syncs held at all times.
    let state = work.path().join("agent-state");
    fs::create_dir_all(&state).unwrap();
    let held = serde_json::json!({
        "name": "window", "version": 1, "rpo_target_secs": 60, "retention_secs": 7200,
        "level": 3, "initial_sync_window": "*=0",
    });
    let kept = state.join(format!("{GROUP}.policy"));
    fs::write(&kept, held.to_string()).unwrap();
    let agent = Agent::start(work.path(), GROUP, &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_status(Duration::from_secs(10), |s| s.connected);
    std::thread::sleep(Duration::from_secs(3));
    let st = agent.fresh_status();
    assert!(!st.caught_up || st.disks[0].sync_percent < 100.0, "{st:?}");
    assert_eq!(
        st.disks[0].sync_sent_bytes, 0,
        "the held sync sent data: {st:?}"
    );
    assert!(agent
        .log_text()
        .contains("sync held: the policy's sync window"));

    // The target's policy opens the window (and asks for a point every second, freezing the
    // filesystem the test mounts once the sync is done).
    let path = format!("/v1/groups/{GROUP}/policy");
    let open = |version: u64, every: u64, freeze: &[&str]| {
        serde_json::json!({
            "name": "window", "version": version, "rpo_target_secs": 60,
            "retention_secs": 7200, "level": 3, "initial_sync_window": "*=unlimited",
            "app_consistent_every_secs": every, "freeze": freeze,
        })
        .to_string()
    };
    let (code, body) = mtd.control_put(&path, &open(2, 0, &[]));
    assert_eq!(code, 200, "{body}");
    agent.wait_caught_up(Duration::from_secs(60));
    assert!(agent.log_text().contains("sync window open"));

    let dev = agent.link("d0");
    run_ok(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&dev),
    );
    let mnt = work.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let mut mount = Mount::new(&dev, &mnt);
    fs::write(mnt.join("hello"), b"app data").unwrap();
    let (code, body) = mtd.control_put(&path, &open(3, 1, &[mnt.to_str().unwrap()]));
    assert_eq!(code, 200, "{body}");
    let app_tags = |mtd: &Mtd| {
        let (_, body) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["tags"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter(|t| {
                        t["kind"] == "app-consistent"
                            && t["name"].as_str().is_some_and(|n| n.starts_with("auto-"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while app_tags(&mtd) < 2 {
        assert!(
            Instant::now() < deadline,
            "no scheduled app-consistent points:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A policy without the interval stops them.
    let (code, body) = mtd.control_put(&path, &open(4, 0, &[]));
    assert_eq!(code, 200, "{body}");
    agent.wait_status(Duration::from_secs(10), |s| {
        s.policy.as_deref() == Some("window v4")
    });
    std::thread::sleep(Duration::from_secs(2));
    let n = app_tags(&mtd);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        app_tags(&mtd),
        n,
        "points went on after the policy dropped them"
    );
    mount.umount();

    // What the held sync sent in the end is the disk.
    let mut agent = agent;
    agent.wait_caught_up(Duration::from_secs(60));
    agent.stop();
    let latest = mtd.stop_and_check_latest(GROUP, "d0", &img);
    let _ = fs::remove_file(latest);
}
