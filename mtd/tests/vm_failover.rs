//! Replica VMs, booted for real under qemu TCG from what the target exposes: a test failover
//! runs the group's configured boot command and the VM prints the marker written at the source;
//! a recovery plan of two VMs runs in test mode (the second boots only once the first is
//! healthy) and reports its RTO; a plan whose boot command fails stops and leaves things for
//! cleanup; and the whole round trip (planned failover, reverse replication, failback, reverse
//! again) with the VM running at each site and byte-for-byte comparisons at each step.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::vm::{self, Vm};
use common::*;
use serde_json::Value;

const CATCH_UP: Duration = Duration::from_secs(120);
const BOOT_LIMIT: Duration = Duration::from_secs(90);

/// A protected VM root disk: the image, its agent, and the marker written through the
/// protected device.
fn protected_vm(work: &Path, mtd: &Mtd, group: &str, marker: &str) -> (PathBuf, Agent) {
    let dir = work.join(group);
    fs::create_dir_all(&dir).unwrap();
    let img = dir.join("root.img");
    vm::make_root(&img, 64);
    let agent = Agent::start(&dir, group, &[("root", &img)], &mtd.target(), &[]);
    let mut m = Mount::new(&agent.link("root"), &dir.join("mnt"));
    fs::write(dir.join("mnt/marker"), marker).unwrap();
    m.umount();
    agent.wait_caught_up(CATCH_UP);
    (img, agent)
}

fn wait_file_contains(path: &Path, needle: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            t0.elapsed() < limit,
            "{} has no {needle:?} after {limit:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plan of two boot groups, one machine each: vm1 then vm2.
fn plan_text(boot1: &str, boot2: &str) -> String {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"name = "two-vms"

[[boot_group]]
name = "first"
post = ["echo first group up"]

[[boot_group.machine]]
name = "m1"
group = "vm1"
boot = "{}"
health = {{ console = "rewind-vm: healthy" }}
timeout_secs = 120

[[boot_group]]
name = "second"

[[boot_group.machine]]
name = "m2"
group = "vm2"
boot = "{}"
health = {{ console = "rewind-vm: healthy" }}
timeout_secs = 120
"#,
        q(boot1),
        q(boot2)
    )
}

#[test]
fn test_failover_boots_the_vm_and_a_plan_of_two_vms_reports_its_rto() {
    if !can_run() || !vm::can_boot("test_failover_boots_the_vm") {
        return;
    }
    vm::images();
    let work = tempdir();
    let w = work.path();
    let mtd = site(w, "dr");
    let (_img1, mut a1) = protected_vm(w, &mtd, "vm1", "marker-of-vm1");
    let (_img2, mut a2) = protected_vm(w, &mtd, "vm2", "marker-of-vm2");

    // Test failover with the group's boot command: the VM boots from the test disk over NBD.
    let cmd = vm::boot_command("{nbd:root}");
    mtd.rewind(&["failover", "configure", "vm1", "--boot", &cmd]);
    let t0 = Instant::now();
    let r = mtd.rewind_json(&["failover", "test", "vm1"]);
    let log = PathBuf::from(r["test"]["boot"]["log"].as_str().expect("boot log"));
    let console = wait_file_contains(&log, "rewind-vm: healthy", BOOT_LIMIT);
    eprintln!("test failover to a healthy VM: {:?}", t0.elapsed());
    assert!(
        console.contains("rewind-vm: marker=marker-of-vm1"),
        "{console}"
    );
    assert!(console.contains("rewind-vm: boot-count=1"), "{console}");
    // Replication goes on while the test VM runs.
    write_random_mib(&a1.link("root"), 50, 4, 9);
    a1.wait_caught_up(CATCH_UP);
    mtd.rewind(&["failover", "cleanup", "vm1"]);
    mtd.rewind(&["failover", "configure", "vm1", "--clear"]);

    // A recovery plan: vm1 first, vm2 once vm1 is healthy.
    let plan = w.join("plan.toml");
    fs::write(&plan, plan_text(&cmd, &cmd)).unwrap();
    let st = mtd.rewind_json(&["plan", "run", plan.to_str().unwrap(), "--mode", "test"]);
    assert_eq!(st["state"], "succeeded", "{st:#}");
    let rto = st["rto_ms"].as_u64().expect("rto");
    eprintln!(
        "bar rto-test-plan: {:.1} s (want < 30)",
        rto as f64 / 1000.0
    );
    let m1 = &st["machines"][0];
    let m2 = &st["machines"][1];
    let m1_healthy = m1["healthy_ms"].as_u64().unwrap();
    let m2_prepare = st["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "prepare" && s["machine"] == "m2")
        .expect("m2 prepared")["started_ms"]
        .as_u64()
        .unwrap();
    assert!(
        m2_prepare >= m1_healthy,
        "vm2 started before vm1 was healthy: {st:#}"
    );
    for (m, marker) in [(m1, "marker-of-vm1"), (m2, "marker-of-vm2")] {
        let c = fs::read_to_string(m["console_log"].as_str().unwrap()).unwrap();
        assert!(c.contains(&format!("rewind-vm: marker={marker}")), "{c}");
    }
    let st = mtd.rewind_json(&["plan", "cleanup"]);
    assert_eq!(st["state"], "cleaned");
    assert_eq!(mtd.rewind_json(&["overlay", "list"]), Value::Array(vec![]));

    // A plan whose first machine fails: the second never starts, things stay for cleanup.
    fs::write(&plan, plan_text("echo no hypervisor; exit 3", &cmd)).unwrap();
    let e = mtd.rewind_fails(&["plan", "run", plan.to_str().unwrap(), "--mode", "test"]);
    assert!(e.contains("failed"), "{e}");
    let st = mtd.rewind_json(&["plan", "status"]);
    assert_eq!(st["state"], "failed", "{st:#}");
    assert_eq!(st["machines"][0]["state"], "failed");
    assert_eq!(st["machines"][1]["state"], "pending");
    assert!(mtd.rewind_json(&["failover", "status", "vm1"])["state"]["test"].is_object());
    let e = mtd.rewind_fails(&["plan", "run", plan.to_str().unwrap(), "--mode", "test"]);
    assert!(e.contains("cleanup"), "{e}");
    mtd.rewind(&["plan", "cleanup"]);
    assert!(mtd.rewind_json(&["failover", "status", "vm1"])["state"]["test"].is_null());
    a1.stop();
    a2.stop();
}

/// Boot the VM on `drive` until it powers off by itself; its console.
fn boot_once(drive: &Path) -> String {
    let mut v = Vm::boot_with_append(drive.to_str().unwrap(), "rewind.poweroff");
    v.wait_line("rewind-vm: healthy", BOOT_LIMIT)
        .unwrap_or_else(|e| panic!("{e}"));
    v.wait_exit(BOOT_LIMIT).expect("the VM powers off");
    v.console()
}

#[test]
fn vm_round_trip_planned_failover_reverse_failback() {
    if !can_run() || !vm::can_boot("vm_round_trip") {
        return;
    }
    vm::images();
    let work = tempdir();
    let w = work.path();
    let mut a = site(w, "site-a");
    let mut b = site(w, "site-b");
    let (src, mut agent) = protected_vm(w, &b, "vm1", "round-trip");
    // The VM runs at the source, on the protected device.
    let c = boot_once(&agent.link("root"));
    assert!(c.contains("rewind-vm: boot-count=1"), "{c}");
    agent.wait_caught_up(CATCH_UP);

    // Planned failover to B: the live disk is the source disk.
    let r = b.rewind_json(&["failover", "planned", "vm1"]);
    assert_same(&live_loop(&r), &src);
    b.rewind(&["failover", "commit", "vm1"]);
    agent.kill9();
    drop(agent);

    // Reverse: A adopts the old source disk; the VM runs at B on the protected live disk.
    a.rewind(&[
        "adopt",
        "vm1",
        "--agent",
        "rewind-reverse-vm1",
        "--disk",
        &format!("root={}", src.display()),
    ]);
    let links_b = w.join("links-b");
    b.rewind(&[
        "reverse",
        "vm1",
        "--to",
        &a.target(),
        "--links-dir",
        links_b.to_str().unwrap(),
    ]);
    let dev_b = links_b.join("vm1/root");
    let st = wait_caught_up_at(&reverse_state(&b, "vm1"), CATCH_UP, &String::new);
    let first: u64 = st.disks.iter().map(|d| d.sync_sent_bytes).sum();
    let c = boot_once(&dev_b);
    assert!(c.contains("rewind-vm: marker=round-trip"), "{c}");
    assert!(c.contains("rewind-vm: boot-count=2"), "{c}");
    wait_caught_up_at(&reverse_state(&b, "vm1"), CATCH_UP, &String::new);

    // Failback: planned failover to A; A's live disk is B's disk.
    let r = a.rewind_json(&["failover", "planned", "vm1"]);
    let live_a = live_loop(&r);
    assert_same(&live_a, &dev_b);
    a.rewind(&["failover", "commit", "vm1"]);

    // Reverse again: B adopts its live disk; the VM runs at A, protected towards B.
    b.rewind(&[
        "adopt",
        "vm1",
        "--agent",
        "rewind-reverse-vm1",
        "--from-live",
    ]);
    let links_a = w.join("links-a");
    a.rewind(&[
        "reverse",
        "vm1",
        "--to",
        &b.target(),
        "--links-dir",
        links_a.to_str().unwrap(),
    ]);
    let dev_a = links_a.join("vm1/root");
    let st = wait_caught_up_at(&reverse_state(&a, "vm1"), CATCH_UP, &String::new);
    let second: u64 = st.disks.iter().map(|d| d.sync_sent_bytes).sum();
    eprintln!("first compares resent {first} and {second} bytes of a 64 MiB disk");
    assert!(first < (1 << 20) && second < (1 << 20));
    let c = boot_once(&dev_a);
    assert!(c.contains("rewind-vm: boot-count=3"), "{c}");
    wait_caught_up_at(&reverse_state(&a, "vm1"), CATCH_UP, &String::new);
    let final_a = w.join("final-a.img");
    fs::write(&final_a, fs::read(&dev_a).unwrap()).unwrap();
    a.stop();
    b.stop_and_check_latest("vm1", "root", &final_a);
}
