//! The whole round trip between two sites, each a real `rewind-mtd`: protect a disk at site A
//! into site B, planned failover to B, commit, reverse replication from B back to A (A adopted
//! the old source disk, so only differences travel), failback (planned failover back to A),
//! and reverse replication again from A to B (B adopts its own live disk). Byte-for-byte
//! comparisons at each step; the resent bytes show only changes travel.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;
const CATCH_UP: Duration = Duration::from_secs(120);

/// Read a whole device into a file (to compare it after the device is gone).
fn copy_out(dev: &Path, out: &Path) {
    fs::write(out, fs::read(dev).expect("read device")).unwrap();
}

#[test]
fn failover_reverse_failback_and_reverse_again() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let mut a = site(w, "site-a");
    let mut b = site(w, "site-b");
    let src = w.join("src.img");
    fs::File::create(&src)
        .and_then(|f| f.set_len(64 * MIB))
        .unwrap();
    fs::create_dir_all(w.join("source")).unwrap();
    let mut agent = Agent::start(
        &w.join("source"),
        "vm1",
        &[("root", &src)],
        &b.target(),
        &[],
    );
    let dev = agent.link("root");
    write_random_mib(&dev, 0, 24, 1);
    agent.wait_caught_up(CATCH_UP);

    // 1. Planned failover to B: nothing lost.
    let r = b.rewind_json(&["failover", "planned", "vm1"]);
    let live_b = live_loop(&r);
    assert_same(&live_b, &src);
    b.rewind(&["failover", "commit", "vm1"]);
    agent.kill9();
    drop(agent);

    // 2. A adopts the old source disk; B replicates its live disk back to A.
    a.rewind(&[
        "adopt",
        "vm1",
        "--agent",
        "rewind-reverse-vm1",
        "--disk",
        &format!("root={}", src.display()),
    ]);
    let links_b = w.join("links-b");
    let rv = b.rewind_json(&[
        "reverse",
        "vm1",
        "--to",
        &a.target(),
        "--links-dir",
        links_b.to_str().unwrap(),
    ]);
    assert!(rv["devices"].is_array(), "{rv}");
    let dev_b = links_b.join("vm1").join("root");
    let st = wait_caught_up_at(&reverse_state(&b, "vm1"), CATCH_UP, &|| {
        reverse_log(&b, "vm1")
    });
    let sent: u64 = st.disks.iter().map(|d| d.sync_sent_bytes).sum();
    eprintln!("reverse replication's first compare sent {sent} bytes");
    assert_eq!(st.sync_kind.as_deref(), Some("resync"), "{st:?}");
    assert!(
        sent < MIB,
        "the adopted copy was equal, yet {sent} bytes were resent"
    );
    // The workload now runs at B, through the protected device.
    write_random_mib(&dev_b, 30, 4, 2);
    wait_caught_up_at(&reverse_state(&b, "vm1"), CATCH_UP, &|| {
        reverse_log(&b, "vm1")
    });

    // Every write must go through the reverse agent: NBD clients get the live disk read-only.
    let uri = format!("nbd+unix:///vm1/root@live?socket={}", b.nbd_sock.display());
    let w_out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 4k", &uri])
        .output()
        .expect("qemu-io");
    assert!(
        !w_out.status.success() || String::from_utf8_lossy(&w_out.stdout).contains("failed"),
        "a write to the live disk over NBD went through: {w_out:?}"
    );
    run_ok(std::process::Command::new("qemu-io").args([
        "-f",
        "raw",
        "-r",
        "-c",
        "read 0 4k",
        &uri,
    ]));

    // The live disk is in use here: adopting it is refused, and changes nothing.
    let e = b.rewind_fails(&[
        "adopt",
        "vm1",
        "--agent",
        "rewind-reverse-vm1",
        "--from-live",
    ]);
    assert!(e.contains("not fenced"), "{e}");

    // 3. Failback: planned failover back to A.
    let r = a.rewind_json(&["failover", "planned", "vm1"]);
    let live_a = live_loop(&r);
    assert_same(&live_a, &dev_b);
    a.rewind(&["failover", "commit", "vm1"]);

    // 4. Reverse again: B adopts its live disk, A replicates its live disk to B.
    b.rewind(&[
        "adopt",
        "vm1",
        "--agent",
        "rewind-reverse-vm1",
        "--from-live",
    ]);
    let links_a = w.join("links-a");
    a.rewind_json(&[
        "reverse",
        "vm1",
        "--to",
        &b.target(),
        "--links-dir",
        links_a.to_str().unwrap(),
    ]);
    let dev_a = links_a.join("vm1").join("root");
    let st = wait_caught_up_at(&reverse_state(&a, "vm1"), CATCH_UP, &|| {
        reverse_log(&a, "vm1")
    });
    let sent: u64 = st.disks.iter().map(|d| d.sync_sent_bytes).sum();
    eprintln!("reverse replication after failback sent {sent} bytes at its first compare");
    assert!(
        sent < MIB,
        "B adopted an equal copy, yet {sent} bytes were resent"
    );
    write_random_mib(&dev_a, 40, 4, 3);
    wait_caught_up_at(&reverse_state(&a, "vm1"), CATCH_UP, &|| {
        reverse_log(&a, "vm1")
    });
    let final_a = w.join("final-a.img");
    copy_out(&dev_a, &final_a);
    a.stop();
    b.stop_and_check_latest("vm1", "root", &final_a);
}

/// Reverse replication outlives its daemon: a clean restart and a kill -9 of the site running
/// it. Each time the agent comes back over the re-attached live disk (a leftover agent from the
/// killed daemon is stopped first), and the other site's copy stays equal to the disk.
#[test]
fn reverse_replication_survives_restarts_of_its_daemon() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let mut a = site(w, "site-a");
    let mut b = site(w, "site-b");
    let src = w.join("src.img");
    fs::File::create(&src)
        .and_then(|f| f.set_len(32 * MIB))
        .unwrap();
    fs::create_dir_all(w.join("source")).unwrap();
    let mut agent = Agent::start(&w.join("source"), "db", &[("d", &src)], &b.target(), &[]);
    write_random_mib(&agent.link("d"), 0, 8, 1);
    agent.wait_caught_up(CATCH_UP);
    b.rewind_json(&["failover", "planned", "db"]);
    b.rewind(&["failover", "commit", "db"]);
    agent.kill9();
    drop(agent);
    a.rewind(&[
        "adopt",
        "db",
        "--agent",
        "rewind-reverse-db",
        "--disk",
        &format!("d={}", src.display()),
    ]);
    let links_b = w.join("links-b");
    let reverse = [
        "reverse",
        "db",
        "--to",
        &a.target(),
        "--links-dir",
        links_b.to_str().unwrap(),
    ];
    b.rewind(&reverse);
    // A second start is refused while the first runs.
    let e = b.rewind_fails(&reverse);
    assert!(e.contains("already replicating"), "{e}");
    let dev_b = links_b.join("db/d");
    let state = reverse_state(&b, "db");
    write_random_mib(&dev_b, 10, 2, 2);
    flush(&dev_b);
    wait_caught_up_at(&state, CATCH_UP, &|| reverse_log(&b, "db"));

    let pid = wait_caught_up_at(&state, CATCH_UP, &String::new).pid;
    b.stop();
    b.restart();
    let pid = wait_new_agent(&state, pid);
    write_random_mib(&dev_b, 14, 2, 3);
    flush(&dev_b);
    wait_caught_up_at(&state, CATCH_UP, &|| reverse_log(&b, "db"));

    b.kill9();
    b.restart();
    wait_new_agent(&state, pid);
    write_random_mib(&dev_b, 18, 2, 4);
    flush(&dev_b);
    wait_caught_up_at(&state, CATCH_UP, &|| reverse_log(&b, "db"));
    let final_b = w.join("final-b.img");
    copy_out(&dev_b, &final_b);
    b.stop();
    a.stop_and_check_latest("db", "d", &final_b);
}

/// Waits until an agent other than `old_pid` runs on `state` with its devices up (the daemon
/// restarts its reverse agent); its pid.
fn wait_new_agent(state: &Path, old_pid: u32) -> u32 {
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(st) = read_status(state) {
            if st.pid != old_pid && st.connected && st.disks.iter().all(|d| d.link.exists()) {
                return st.pid;
            }
        }
        assert!(
            t0.elapsed() < CATCH_UP,
            "no new reverse agent on {}",
            state.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// fsync the protected device, as a workload does before it counts on its writes: the live
/// disk under it (an overlay at the target) keeps them across a crash of its daemon from then on.
fn flush(dev: &Path) {
    fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("fsync {}: {e}", dev.display()));
}
