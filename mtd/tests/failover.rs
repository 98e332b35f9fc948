//! Failover at the target, end to end with a real agent: test failover while replication goes
//! on, planned failover with zero data loss and fencing, unplanned failover with a change of
//! point and commit, and the refusals that must change nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::refused_writer::RefusedWriter;
use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const CATCH_UP: Duration = Duration::from_secs(120);

fn make_disk(path: &Path, mib: u64) {
    fs::File::create(path)
        .and_then(|f| f.set_len(mib * MIB))
        .expect("disk image");
}

fn disk_of<'a>(result: &'a Value, set: &str) -> &'a Value {
    let set = match set {
        "test" => &result["test"],
        _ => &result["promotion"]["set"],
    };
    &set["disks"][0]
}

fn loop_of(result: &Value, set: &str) -> PathBuf {
    PathBuf::from(
        disk_of(result, set)["loop_device"]
            .as_str()
            .unwrap_or_else(|| panic!("no loop device in {result}")),
    )
}

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, off)
        .unwrap();
    buf
}

/// Copy `src` (the source disk at this moment) to `dst`.
fn snapshot(src: &Path, dst: &Path) {
    fs::copy(src, dst).expect("snapshot of the source");
}

fn newest_seq(mtd: &Mtd, group: &str) -> u64 {
    mtd.rewind_json(&["points", group])["newest"]["seq"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn test_failover_while_replication_goes_on() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mut mtd = site(work.path(), "dr");
    let src = work.path().join("src.img");
    make_disk(&src, 64);
    let agent = Agent::start(work.path(), "web", &[("root", &src)], &mtd.target(), &[]);
    let dev = agent.link("root");
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    {
        let mut m = Mount::new(&dev, &work.path().join("m-src"));
        fs::write(
            work.path().join("m-src/marker"),
            b"before the test failover\n",
        )
        .unwrap();
        m.umount();
    }
    agent.wait_caught_up(CATCH_UP);
    let seq0 = newest_seq(&mtd, "web");

    let t0 = Instant::now();
    let r = mtd.rewind_json(&["failover", "test", "web"]);
    eprintln!("failover test answered in {:?}", t0.elapsed());
    assert_eq!(r["test"]["seq"].as_u64(), Some(seq0), "{r}");
    let lo = loop_of(&r, "test");
    assert_eq!(disk_of(&r, "test")["export"], "web/root@test");
    // The test disk is a writable copy of the point: the marker is there, and writes stay in it.
    {
        let mut m = Mount::new(&lo, &work.path().join("m-test"));
        assert_eq!(
            fs::read_to_string(work.path().join("m-test/marker")).unwrap(),
            "before the test failover\n"
        );
        fs::write(work.path().join("m-test/from-test"), b"scratch").unwrap();
        m.umount();
    }
    // Replication goes on meanwhile, and does not reach the test disk.
    let before = read_at(&lo, 40 * MIB, MIB as usize);
    write_random_mib(&dev, 40, 8, 7);
    agent.wait_caught_up(CATCH_UP);
    assert!(newest_seq(&mtd, "web") > seq0);
    assert_eq!(read_at(&lo, 40 * MIB, MIB as usize), before);
    assert_ne!(read_at(&src, 40 * MIB, MIB as usize), before);
    // The same disk over NBD.
    let uri = disk_of(&r, "test")["nbd_uri"].as_str().unwrap().to_string();
    let via_nbd = work.path().join("via-nbd.img");
    run_ok(Command::new("nbdcopy").arg(&uri).arg(&via_nbd));
    assert_same(&via_nbd, &lo);

    let e = mtd.rewind_fails(&["failover", "test", "web"]);
    assert!(e.contains("already has a test failover"), "{e}");
    let e = mtd.rewind_fails(&["failover", "commit", "web"]);
    assert!(e.contains("no failover to commit"), "{e}");

    mtd.rewind(&["failover", "cleanup", "web"]);
    assert_eq!(mtd.rewind_json(&["overlay", "list"]), Value::Array(vec![]));
    assert_eq!(mtd.rewind_json(&["attachments"]), Value::Array(vec![]));
    let e = mtd.rewind_fails(&["failover", "cleanup", "web"]);
    assert!(e.contains("no test failover"), "{e}");
    let mut agent = agent;
    agent.stop();
    mtd.stop_and_check_latest("web", "root", &src);
}

#[test]
fn planned_failover_loses_nothing_and_fences_the_source() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mut mtd = site(work.path(), "dr");
    let src = work.path().join("src.img");
    make_disk(&src, 64);
    let mut agent = Agent::start(work.path(), "db", &[("data", &src)], &mtd.target(), &[]);
    let dev = agent.link("data");
    write_random_mib(&dev, 0, 16, 1);
    agent.wait_caught_up(CATCH_UP);

    // A workload that keeps writing until its writes are refused.
    let writer = RefusedWriter::start(&dev);
    std::thread::sleep(Duration::from_millis(500));
    let r = mtd.rewind_json(&["failover", "planned", "db"]);
    let (writes, err) = writer.stop();
    assert!(writes > 0);
    let err = err.expect("writes after the drain must be refused");
    eprintln!("{writes} writes, then: {err}");

    let p = &r["promotion"];
    assert_eq!(p["kind"], "planned");
    assert_eq!(p["committed"], false);
    let points = mtd.rewind_json(&["points", "db"]);
    let tag = points["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "planned-failover")
        .unwrap_or_else(|| panic!("no planned-failover tag: {points}"))
        .clone();
    assert_eq!(tag["seq"], p["set"]["seq"]);
    // Zero data loss: the live disk is the source disk, byte for byte.
    let live = loop_of(&r, "live");
    assert_same(&live, &src);

    // A second promotion is refused, and so is a test failover of a promoted group.
    let e = mtd.rewind_fails(&["failover", "planned", "db"]);
    assert!(e.contains("already promoted"), "{e}");
    let e = mtd.rewind_fails(&["failover", "unplanned", "db", "--point", "latest"]);
    assert!(e.contains("already promoted"), "{e}");
    // The old source is fenced: it says so, and a restart of it is refused.
    let t0 = Instant::now();
    while !agent.log_text().contains("fenced") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The live disk takes writes; commit keeps them and the point.
    write_random_mib(&live, 60, 2, 5);
    let c = mtd.rewind_json(&["failover", "commit", "db"]);
    assert_eq!(c["promotion"]["committed"], true);
    let e = mtd.rewind_fails(&["failover", "change-point", "db", "--point", "latest"]);
    assert!(e.contains("committed"), "{e}");
    agent.kill9();
    drop(agent);
    mtd.stop();
}

#[test]
fn unplanned_failover_change_point_and_commit() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mut mtd = site(work.path(), "dr");
    let src = work.path().join("src.img");
    make_disk(&src, 32);
    let mut agent = Agent::start(work.path(), "app", &[("d", &src)], &mtd.target(), &[]);
    let dev = agent.link("d");
    write_random_mib(&dev, 0, 8, 1);
    let t1 = agent.tag("t1", &[]);
    agent.wait_caught_up(CATCH_UP);
    snapshot(&src, &work.path().join("at-t1.img"));
    write_random_mib(&dev, 4, 8, 2);
    let t2 = agent.tag("t2", &[]);
    agent.wait_caught_up(CATCH_UP);
    snapshot(&src, &work.path().join("at-t2.img"));
    write_random_mib(&dev, 10, 8, 3);
    agent.wait_caught_up(CATCH_UP);

    // Refusals change nothing.
    let e = mtd.rewind_fails(&["failover", "unplanned", "app", "--point", "tag:nope"]);
    assert!(e.contains("nope"), "{e}");
    let e = mtd.rewind_fails(&["failover", "change-point", "app", "--point", "tag:t1"]);
    assert!(e.contains("not failed over"), "{e}");
    let e = mtd.rewind_fails(&["failover", "test", "nosuchgroup"]);
    assert!(e.contains("nosuchgroup"), "{e}");
    assert_eq!(
        mtd.rewind_json(&["failover", "status"]),
        Value::Array(vec![])
    );
    // Planned failover needs the agent.
    agent.stop();
    let e = mtd.rewind_fails(&["failover", "planned", "app"]);
    assert!(
        e.contains("not connected") && e.contains("unplanned"),
        "{e}"
    );
    assert_eq!(mtd.rewind_json(&["overlay", "list"]), Value::Array(vec![]));

    let r = mtd.rewind_json(&["failover", "unplanned", "app", "--point", "tag:t1"]);
    assert_eq!(r["promotion"]["set"]["seq"].as_u64(), Some(t1));
    assert_same(&loop_of(&r, "live"), &work.path().join("at-t1.img"));
    let r = mtd.rewind_json(&["failover", "change-point", "app", "--point", "tag:t2"]);
    assert_eq!(r["promotion"]["set"]["seq"].as_u64(), Some(t2));
    let live = loop_of(&r, "live");
    assert_same(&live, &work.path().join("at-t2.img"));
    mtd.rewind(&["failover", "commit", "app"]);
    // The history after the committed point is gone, also across a restart.
    assert_eq!(newest_seq(&mtd, "app"), t2);
    mtd.stop();
    mtd.restart();
    assert_eq!(newest_seq(&mtd, "app"), t2);
    let st = mtd.rewind_json(&["failover", "status", "app"]);
    assert_eq!(st["state"]["promotion"]["committed"], true, "{st}");
    let live = PathBuf::from(
        st["state"]["promotion"]["set"]["disks"][0]["loop_device"]
            .as_str()
            .unwrap(),
    );
    assert_same(&live, &work.path().join("at-t2.img"));
    let e = mtd.rewind_fails(&["failover", "commit", "app"]);
    assert!(e.contains("already committed"), "{e}");
    mtd.stop();
}

#[test]
fn failover_to_a_point_inside_the_initial_sync_is_refused() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = site(work.path(), "dr");
    let src = work.path().join("src.img");
    make_disk(&src, 64);
    // Random data everywhere, sent at 2 MiB/s: the initial sync takes about half a minute.
    write_random_mib(&src, 0, 64, 11);
    let mut agent = Agent::start(
        work.path(),
        "slow",
        &[("d", &src)],
        &mtd.target(),
        &["--bandwidth-mib", "2"],
    );
    let t0 = Instant::now();
    while newest_seq(&mtd, "slow") == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "nothing replicated");
        std::thread::sleep(Duration::from_millis(100));
    }
    for args in [
        &["failover", "unplanned", "slow", "--point", "latest"][..],
        &["failover", "test", "slow"][..],
        &["failover", "planned", "slow"][..],
    ] {
        let e = mtd.rewind_fails(args);
        assert!(
            e.contains("initial-sync") || e.contains("resync") || e.contains("not recoverable"),
            "{args:?}: {e}"
        );
    }
    assert_eq!(
        mtd.rewind_json(&["failover", "status"]),
        Value::Array(vec![])
    );
    assert_eq!(mtd.rewind_json(&["overlay", "list"]), Value::Array(vec![]));
    agent.kill9();
}
