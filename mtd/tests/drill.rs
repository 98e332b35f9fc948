//! Drills for real: a target proves a group's point recoverable by itself.
//!
//! - With the test VM (qemu TCG): the drill takes the newest app-consistent point (not the
//!   newer latest), boots it in a network namespace of its own, and its probes pass (a console
//!   line, a command in the guest over the serial console, a TCP port inside the namespace, the
//!   file system check); the evidence is kept (console log, probe outputs, a QMP screenshot),
//!   nothing is left behind, and the verified point shows in `rewind points`, the API and the
//!   metrics. An operator's test failover makes a drill a 409. A point whose file system was
//!   damaged at the source (its group descriptors zeroed through the protected device, so the
//!   damage is replicated) fails the drill with the probe's output, and the verified point stays.
//! - Without a VM: the drill checks each disk's file system through a read-only export (e2fsck),
//!   passes on a clean point, fails with e2fsck's report on a damaged one.
//! - The policy's `drill_every_secs` makes the target drill by itself, and a drill due while an
//!   operator's test failover is up is deferred (logged, with the reason) and runs after it.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::http::{free_port, get};
use common::vm;
use common::*;
use serde_json::Value;

const CATCH_UP: Duration = Duration::from_secs(120);
const LIMIT: Duration = Duration::from_secs(180);

/// A target with a view tree and metrics.
fn target(work: &Path) -> Mtd {
    let dir = work.join("dr");
    fs::create_dir_all(&dir).unwrap();
    let views = dir.join("views");
    Mtd::start_with(
        &dir,
        &[
            "--views",
            views.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
}

/// A protected ext4 disk (the test VM's root image) with `/marker` written through the
/// protected device.
fn protected(work: &Path, mtd: &Mtd, group: &str, marker: &str) -> Agent {
    let dir = work.join(group);
    fs::create_dir_all(&dir).unwrap();
    let img = dir.join("root.img");
    vm::make_root(&img, 64);
    let agent = Agent::start(&dir, group, &[("root", &img)], &mtd.target(), &[]);
    set_marker(&agent, &dir, marker, false);
    agent
}

/// Write `/marker` through the protected device; with `tag`, an app-consistent tag (the file
/// system frozen) while it is mounted. Returns the tag's seq (0 without).
fn set_marker(agent: &Agent, dir: &Path, marker: &str, tag: bool) -> u64 {
    let mnt = dir.join("mnt");
    let mut m = Mount::new(&agent.link("root"), &mnt);
    fs::write(mnt.join("marker"), marker).unwrap();
    let seq = if tag {
        agent.tag(&format!("ac-{marker}"), &[&mnt])
    } else {
        0
    };
    m.umount();
    agent.wait_caught_up(CATCH_UP);
    seq
}

/// Zero the ext4 group descriptor table through the protected device (so the damage is a
/// replicated write like any other).
fn damage_fs(agent: &Agent) {
    let dev = agent.link("root");
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .unwrap();
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, 1024).unwrap();
    assert_eq!(
        &sb[56..58],
        &[0x53, 0xef],
        "no ext4 superblock on {}",
        dev.display()
    );
    let first = u32::from_le_bytes(sb[20..24].try_into().unwrap()) as u64;
    let bs = 1024u64 << u32::from_le_bytes(sb[24..28].try_into().unwrap());
    f.write_all_at(&vec![0u8; bs as usize], (first + 1) * bs)
        .unwrap();
    f.sync_all().unwrap();
    agent.wait_caught_up(CATCH_UP);
}

fn drill_status(mtd: &Mtd, group: &str) -> Value {
    mtd.rewind_json(&["drill", "status", group])
}

fn metric(mtd: &Mtd, line_start: &str) -> Option<f64> {
    let (_, body) = get(&mtd.metrics_addr(), "/metrics");
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The group's boot command for drills: the test VM on the test disk over NBD, a shell on the
/// serial console (`rewind.shell`) reached through `$REWIND_SERIAL` and logged to
/// `$REWIND_CONSOLE_LOG`, QMP on `$REWIND_QMP`, and qemu's monitor on TCP `port` (a port that
/// answers inside the VM's network namespace only).
fn drill_boot(port: u16) -> String {
    let base = vm::boot_command("{nbd:root}");
    assert!(base.contains("quiet'"), "{base}");
    format!(
        "{} -chardev socket,id=s0,path=$REWIND_SERIAL,server=on,wait=off,logfile=$REWIND_CONSOLE_LOG \
         -serial chardev:s0 -qmp unix:$REWIND_QMP,server=on,wait=off \
         -monitor tcp:127.0.0.1:{port},server=on,wait=off",
        base.replace("quiet'", "quiet rewind.shell'")
    )
}

#[test]
fn a_vm_drill_proves_the_app_consistent_point_and_a_damaged_one_fails() {
    if !can_run() || !vm::can_boot("a_vm_drill") {
        return;
    }
    vm::images();
    let work = tempdir();
    let w = work.path();
    let mtd = target(w);
    let mut agent = protected(w, &mtd, "vm1", "first");
    let tag_seq = set_marker(&agent, &w.join("vm1"), "drilled", true);
    // Newer than the tag: the drill must not take it.
    set_marker(&agent, &w.join("vm1"), "after-the-tag", false);

    let port = free_port();
    mtd.rewind(&["failover", "configure", "vm1", "--boot", &drill_boot(port)]);
    mtd.rewind(&[
        "drill",
        "configure",
        "vm1",
        "--probe",
        "console=rewind-vm: marker=drilled$",
        "--probe",
        "command=cat /marker && test -s /var/boot-count",
        "--probe",
        &format!("tcp={port}"),
        "--probe",
        "fs-check",
        "--timeout",
        "90",
    ]);
    let t0 = Instant::now();
    let s = mtd.rewind_json(&["drill", "run", "vm1"]);
    eprintln!("VM drill: {:?}", t0.elapsed());
    let last = &s["last"];
    assert_eq!(last["ok"], true, "{s:#}");
    assert_eq!(last["seq"], tag_seq, "{s:#}");
    assert_eq!(last["point"], "latest-app-consistent");
    assert_eq!(last["isolated"], true);
    let probes = last["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 4, "{s:#}");
    assert!(probes.iter().all(|p| p["ok"] == true), "{s:#}");
    assert!(
        probes[1]["output"].as_str().unwrap().contains("drilled"),
        "{s:#}"
    );
    assert!(
        probes[2]["output"].as_str().unwrap().contains("namespace"),
        "{s:#}"
    );
    assert!(
        probes[3]["output"].as_str().unwrap().contains("e2fsck"),
        "{s:#}"
    );
    let console = fs::read_to_string(last["console_log"].as_str().unwrap()).unwrap();
    assert!(console.contains("rewind-vm: healthy"), "{console}");
    let shot = PathBuf::from(last["screenshot"].as_str().expect("a screenshot"));
    assert!(fs::read(&shot).unwrap().starts_with(b"P6"), "not a PPM");
    let evidence = PathBuf::from(last["evidence"].as_str().unwrap());
    assert!(evidence.join("summary.json").exists());
    assert_eq!(s["verified"]["seq"], tag_seq);
    // Nothing left: no test disks, no failover state, no VM answering.
    assert_eq!(mtd.rewind_json(&["overlay", "list"]), Value::Array(vec![]));
    assert!(mtd.rewind_json(&["failover", "status", "vm1"])["state"]["test"].is_null());
    let points = mtd.rewind(&["points", "vm1"]);
    assert!(
        points.contains(&format!("last verified point: seq {tag_seq} ")),
        "{points}"
    );
    assert_eq!(
        metric(&mtd, "rewind_last_verified_point_seq{group=\"vm1\"}"),
        Some(tag_seq as f64)
    );
    assert_eq!(
        metric(
            &mtd,
            "rewind_drill_last_result{group=\"vm1\",result=\"passed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&mtd, "rewind_last_test_failover_success{group=\"vm1\"}"),
        Some(1.0)
    );
    let (code, body) = mtd.control_get("/v1/groups");
    assert_eq!(code, 200);
    assert!(body.contains("\"verified_seq\":"), "{body}");

    // An operator's test failover is up: a drill is refused with the reason.
    mtd.rewind(&["failover", "configure", "vm1", "--boot", "sleep 600"]);
    mtd.rewind(&["failover", "test", "vm1"]);
    let (code, body) = mtd.control_post("/v1/groups/vm1/drill", "{}");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("test failover"), "{body}");
    mtd.rewind(&["failover", "cleanup", "vm1"]);
    mtd.rewind(&["failover", "configure", "vm1", "--boot", &drill_boot(port)]);

    // Damage at the source, replicated: the drill of the latest point fails with the console
    // probe's output (the VM cannot mount its root), and the verified point stays.
    damage_fs(&agent);
    let e = mtd.rewind_fails(&["drill", "run", "vm1", "--point", "latest"]);
    assert!(e.contains("failed"), "{e}");
    let s = drill_status(&mtd, "vm1");
    let last = &s["last"];
    assert_eq!(last["ok"], false, "{s:#}");
    let console_probe = &last["probes"][0];
    assert_eq!(console_probe["ok"], false, "{s:#}");
    assert!(
        console_probe["output"]
            .as_str()
            .unwrap()
            .contains("cannot mount root"),
        "{s:#}"
    );
    assert_eq!(s["verified"]["seq"], tag_seq, "{s:#}");
    let points = mtd.rewind(&["points", "vm1"]);
    assert!(points.contains("LAST DRILL FAILED"), "{points}");
    assert_eq!(
        metric(
            &mtd,
            "rewind_drill_last_result{group=\"vm1\",result=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(mtd.rewind_json(&["overlay", "list"]), Value::Array(vec![]));
    agent.stop();
}

#[test]
fn without_a_vm_the_drill_checks_file_systems_and_the_schedule_fires() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let mtd = target(w);
    let mut agent = protected(w, &mtd, "fs1", "plain");

    // No app-consistent point: the latest, and the evidence says so.
    let s = mtd.rewind_json(&["drill", "run", "fs1"]);
    let last = &s["last"];
    assert_eq!(last["ok"], true, "{s:#}");
    assert_eq!(last["point"], "latest");
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains("no app-consistent point"),
        "{s:#}"
    );
    assert!(
        last["probes"][0]["output"]
            .as_str()
            .unwrap()
            .contains("e2fsck"),
        "{s:#}"
    );
    let good = last["seq"].as_u64().unwrap();
    assert_eq!(s["verified"]["seq"], good);
    assert!(mtd
        .rewind_json(&["attachments"])
        .as_array()
        .unwrap()
        .is_empty());

    // Damaged at the source: e2fsck's report, the drill fails, the verified point stays.
    damage_fs(&agent);
    let e = mtd.rewind_fails(&["drill", "run", "fs1"]);
    assert!(e.contains("fs-check root"), "{e}");
    let s = drill_status(&mtd, "fs1");
    let out = s["last"]["probes"][0]["output"].as_str().unwrap();
    assert!(
        out.contains("Corrupt group descriptor") || out.contains("group descriptors"),
        "{out}"
    );
    assert_eq!(s["verified"]["seq"], good);
    assert!(mtd
        .rewind_json(&["attachments"])
        .as_array()
        .unwrap()
        .is_empty());
    agent.stop();

    // The schedule: a drill every 2 s. An operator's test failover defers it (with the reason
    // in the log); once it is cleaned up the drills run by themselves.
    mtd.rewind(&["failover", "test", "fs1"]);
    let before = drill_status(&mtd, "fs1")["last"]["started_ms"]
        .as_u64()
        .unwrap();
    let policy = r#"{"name":"drilled","version":1,"rpo_target_secs":60,"retention_secs":86400,
        "level":3,"drill_every_secs":2}"#;
    let (code, body) = mtd.control_put("/v1/groups/fs1/policy", policy);
    assert_eq!(code, 200, "{body}");
    let t0 = Instant::now();
    while !mtd.log_text().contains("scheduled drill deferred") {
        assert!(t0.elapsed() < LIMIT, "{}", mtd.log_tail(30));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        mtd.log_text().contains("test failover"),
        "{}",
        mtd.log_tail(30)
    );
    mtd.rewind(&["failover", "cleanup", "fs1"]);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        assert!(t0.elapsed() < LIMIT, "{}", mtd.log_tail(30));
        let last = drill_status(&mtd, "fs1")["last"].clone();
        let at = last["started_ms"].as_u64().unwrap();
        if at > before && last["scheduled"] == true && !seen.contains(&at) {
            seen.push(at);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen[1] - seen[0] >= 2000, "{seen:?}");
    let s = drill_status(&mtd, "fs1");
    assert_eq!(s["every_secs"], 2);
}
