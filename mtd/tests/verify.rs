//! Online verify end to end (`rewind verify`): a real `rewind-mtd serve` and `rewind-agent run`
//! on a real disk image. Blocks of the replica are corrupted behind the target's back (a block of
//! a sealed journal segment, whose records' crcs views do not check on read, and a block of the
//! base image after the merger folded it there): verify reports exactly those ranges, `--repair`
//! resends them and a second verify finds nothing. A segment cut short (its blocks unreadable:
//! an IO error to a view) is reported as differing, not a failure, and repaired the same way. On
//! a healthy group with a workload writing throughout, verify finds nothing.
//!
//! The busy workload is the harness's `Writer` on the protected device, not `rewind-loadgen`:
//! loadgen speaks the wire protocol itself in place of an agent, so there would be no source
//! disks for the agent to compare.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use rewind_benches::harness::http::{free_port, get};

const DISK: u64 = 64 << 20;
const LONG: Duration = Duration::from_secs(120);

/// A 4 KiB block no other block of the test holds (`Rng` makes its seed odd: 2n and 2n + 1 would
/// give the same bytes).
fn pattern(seed: u64) -> Vec<u8> {
    Rng::new(2 * seed + 1).bytes(4096)
}

fn write_block(dev: &Path, offset: u64, data: &[u8]) {
    let f = open_direct(dev);
    let mut buf = rewind_linux::aligned::AlignedBuf::new(4096);
    buf.copy_from_slice(data);
    f.write_all_at(&buf, offset)
        .expect("write to the protected device");
}

/// Where `needle` (4 KiB-aligned) is in the files under `dir`: (file, offset).
fn find_block(dir: &Path, needle: &[u8]) -> Option<(PathBuf, u64)> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let Ok(bytes) = fs::read(&p) else { continue };
        if let Some(i) = bytes.chunks(4096).position(|c| c == needle) {
            return Some((p, i as u64 * 4096));
        }
    }
    None
}

/// A master target in `w` started with the `serve` flags, and an agent protecting a fresh image
/// `w/disk.img` of `DISK` bytes as g1's disk d0, caught up: (the image, the target, the agent).
fn one_disk_caught_up(w: &Path, serve: &[&str]) -> (PathBuf, Mtd, Agent) {
    let img = w.join("disk.img");
    fs::File::create(&img)
        .and_then(|f| f.set_len(DISK))
        .unwrap();
    let mtd = Mtd::start_with(w, serve);
    let agent = Agent::start(w, "g1", &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_caught_up(LONG);
    (img, mtd, agent)
}

/// Flips one byte of `file` at `at`, durably (the target reads it as it is on disk).
fn corrupt(file: &Path, at: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
    f.sync_all().unwrap();
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads the control API's events (server-sent events on its unix socket) until a
/// `verify.finished` one.
fn follow_events(control: &Path) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(control).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(b"GET /v1/events HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let t = std::thread::spawn(move || {
        let mut out = Vec::new();
        for line in BufReader::new(s).lines() {
            let line = line.expect("the event stream ended early");
            if let Some(data) = line.strip_prefix("data: ") {
                let e: serde_json::Value = serde_json::from_str(data).unwrap();
                let done = e["kind"] == "verify.finished";
                out.push(e);
                if done {
                    break;
                }
            }
        }
        out
    });
    // (The handler subscribes before it answers; give it the moment.)
    std::thread::sleep(Duration::from_millis(300));
    t
}

/// The differing ranges of a verify result as (disk, offset, len).
fn ranges(v: &serde_json::Value) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = v["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["disk"].as_str().unwrap().to_string(),
                r["offset"].as_u64().unwrap(),
                r["len"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn verify_finds_corrupt_segment_and_base_blocks_and_repair_fixes_them() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let metrics = format!("127.0.0.1:{}", free_port());
    let (img, mut mtd, agent) =
        one_disk_caught_up(w, &["--seal-after", "1s", "--metrics-listen", &metrics]);
    let dev = agent.link("d0");
    let group_dir = mtd.data_dir.join("groups/g1");

    // A block that the merger folds into the base image, then corrupted there.
    let in_base = 5 * (1 << 20) + 3 * 4096;
    let b = pattern(1);
    write_block(&dev, in_base, &b);
    agent.wait_caught_up(LONG);
    mtd.rewind(&["retention", "g1", "1s"]);
    wait_until("the merger to fold the block into the base", || {
        let base = fs::read(group_dir.join("base/d0.img")).unwrap_or_default();
        base.get(in_base as usize..in_base as usize + 4096) == Some(&b[..])
    });
    mtd.rewind(&["retention", "g1", "24h"]);
    corrupt(&group_dir.join("base/d0.img"), in_base + 100);

    // A block in a journal segment that is sealed (a later segment holds later records).
    let in_segment = 33 * (1 << 20) + 7 * 4096;
    let s = pattern(2);
    write_block(&dev, in_segment, &s);
    agent.wait_caught_up(LONG);
    let journal = group_dir.join("journal");
    let (segment, at) = find_block(&journal, &s).expect("the block is in a journal segment");
    // One segment is open at a time: once a later write lands in another one, the block's
    // segment is sealed (--seal-after 1s; the writer seals an aged segment as batches come).
    let mut sealed = false;
    for i in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        let p = pattern(100 + i);
        write_block(&dev, (60 << 20) + i * 4096, &p);
        agent.wait_caught_up(LONG);
        let (later, _) = find_block(&journal, &p).expect("the later write is journaled");
        if later != segment {
            sealed = true;
            break;
        }
    }
    assert!(
        sealed,
        "the segment of the block {segment:?} was never sealed"
    );
    corrupt(&segment, at + 4000);

    // Verify finds exactly those two blocks, while nothing else differs; each raises an event.
    let events = follow_events(&mtd.control);
    let v = mtd.rewind_json(&["verify", "g1"]);
    let events = events.join().unwrap();
    let mut mismatches: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "verify.mismatch")
        .map(|e| {
            assert_eq!(e["group"], "g1", "{e}");
            assert_eq!(e["disk"], "d0", "{e}");
            assert_eq!(e["len"], 4096, "{e}");
            e["offset"].as_u64().unwrap()
        })
        .collect();
    mismatches.sort_unstable();
    assert_eq!(mismatches, vec![in_base, in_segment], "{events:?}");
    assert_eq!(
        ranges(&v),
        vec![
            ("d0".to_string(), in_base, 4096),
            ("d0".to_string(), in_segment, 4096)
        ],
        "{v}"
    );
    assert_eq!(v["mismatched_bytes"], 8192);
    assert_eq!(v["compared_bytes"], DISK);
    assert_eq!(v["repaired"], false);
    for r in v["ranges"].as_array().unwrap() {
        assert!(r["seq"].as_u64().unwrap() > 0, "{r}");
    }
    let (status, text) = get(&metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("rewind_verify_mismatched_bytes{group=\"g1\"} 8192"),
        "{text}"
    );
    assert!(text.contains("rewind_verify_last_timestamp_seconds{group=\"g1\"} "));
    // Without --json the CLI exits 1 and names the ranges.
    let err = mtd.rewind_fails(&["verify", "g1"]);
    assert!(
        err.contains(&format!("g1/d0 offset {in_base} length 4096")),
        "{err}"
    );

    // A restart of the target keeps the result: the metric and the group listing still say
    // what differs (the site's alert stays) until a later verify repairs it.
    mtd.stop();
    mtd.restart();
    let (_, text) = get(&metrics, "/metrics");
    assert!(
        text.contains("rewind_verify_mismatched_bytes{group=\"g1\"} 8192"),
        "{text}"
    );
    let (status, body) = mtd.control_get("/v1/groups");
    assert_eq!(status, 200, "{body}");
    let groups: serde_json::Value = serde_json::from_str(&body).unwrap();
    let g1 = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "g1")
        .unwrap();
    assert_eq!(g1["verify"]["mismatched_bytes"], 8192, "{g1}");
    assert_eq!(g1["verify"]["ranges"], 2, "{g1}");
    assert_eq!(g1["verify"]["repaired"], false, "{g1}");
    agent.wait_caught_up(LONG);

    // Repair resends them; a second verify finds nothing and the replica equals the source.
    let v = mtd.rewind_json(&["verify", "g1", "--repair"]);
    assert_eq!(v["repaired"], true, "{v}");
    assert_eq!(ranges(&v).len(), 2, "{v}");
    let v = mtd.rewind_json(&["verify", "g1"]);
    assert_eq!(ranges(&v), vec![], "{v}");
    assert_eq!(v["compared_bytes"], DISK);
    let (_, text) = get(&metrics, "/metrics");
    assert!(
        text.contains("rewind_verify_mismatched_bytes{group=\"g1\"} 0"),
        "{text}"
    );
    assert!(mtd.latest_equals("g1", "d0", &img, &w.join("scratch.img")));
    drop(agent);
}

#[test]
fn verify_of_a_healthy_group_finds_nothing_while_the_workload_writes() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    let img1 = w.join("disk1.img");
    for i in [&img, &img1] {
        fs::File::create(i).and_then(|f| f.set_len(DISK)).unwrap();
    }
    let mtd = Mtd::start_with(w, &["--seal-after", "2s"]);
    let agent = Agent::start(w, "g1", &[("d0", &img), ("d1", &img1)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    write_random_mib(&dev, 0, 32, 11);
    write_random_mib(&agent.link("d1"), 16, 16, 12);
    agent.wait_caught_up(LONG);
    let point = agent.tag("before-verify", &[]);

    let writer = Writer::start(&dev, DISK, 5, Duration::from_millis(2));
    std::thread::sleep(Duration::from_secs(1));
    // (Without the agent's check that a region was not written after the compared seq, the
    // first of these reports a dozen ranges the workload was writing: it was tried.)
    let mut recompared = 0;
    for args in [
        vec!["verify", "g1"],
        vec!["verify", "g1", "--point", "tag:before-verify"],
        vec!["verify", "g1"],
    ] {
        let v = mtd.rewind_json(&args);
        assert_eq!(ranges(&v), vec![], "{args:?}: {v}");
        assert_eq!(
            v["compared_bytes"],
            2 * DISK,
            "{args:?}: every region compared: {v}"
        );
        assert_eq!(v["not_compared_bytes"], 0, "{v}");
        recompared += v["recompared_bytes"].as_u64().unwrap();
    }
    assert!(
        recompared > 0,
        "regions the workload wrote were compared at a later point"
    );
    let written = writer.stop();
    assert!(
        written > 200,
        "the workload wrote throughout ({written} extents)"
    );
    assert!(point > 0);
    // Nothing was resent: the replica is still level with the source.
    agent.wait_caught_up(LONG);
    assert!(mtd.latest_equals("g1", "d0", &img, &w.join("scratch.img")));
    assert!(mtd.latest_equals("g1", "d1", &img1, &w.join("scratch1.img")));
    drop(agent);
}

#[test]
fn an_unreadable_segment_block_is_reported_as_differing_and_repaired() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let (img, mtd, agent) = one_disk_caught_up(w, &["--seal-after", "1s"]);
    let dev = agent.link("d0");
    let journal = mtd.data_dir.join("groups/g1/journal");

    let x = 17 * (1 << 20) + 5 * 4096;
    let p = pattern(7);
    write_block(&dev, x, &p);
    agent.wait_caught_up(LONG);
    let (segment, at) = find_block(&journal, &p).expect("the block is journaled");
    // Markers, 64 KiB apart, until one lands in a later segment: X's is then sealed. Those that
    // landed in X's segment after X are cut off with it.
    let mut want = vec![("d0".to_string(), x, 4096)];
    for i in 0..40u64 {
        std::thread::sleep(Duration::from_millis(500));
        let m = pattern(200 + i);
        let off = (48 << 20) + i * 65536;
        write_block(&dev, off, &m);
        agent.wait_caught_up(LONG);
        let (seg, _) = find_block(&journal, &m).expect("the marker is journaled");
        if seg != segment {
            break;
        }
        want.push(("d0".to_string(), off, 4096));
    }
    // The segment loses everything from X's data on (a short read is an IO error to a view).
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(at))
        .unwrap();

    let v = mtd.rewind_json(&["verify", "g1"]);
    want.sort();
    assert_eq!(ranges(&v), want, "{v}");
    assert!(
        mtd.log_text()
            .contains("answering its unreadable blocks as differing"),
        "the target says why"
    );
    // The session went on: repair resends them, and then nothing differs.
    let v = mtd.rewind_json(&["verify", "g1", "--repair"]);
    assert_eq!(v["repaired"], true, "{v}");
    let v = mtd.rewind_json(&["verify", "g1"]);
    assert_eq!(ranges(&v), vec![], "{v}");
    assert!(mtd.latest_equals("g1", "d0", &img, &w.join("scratch.img")));
    drop(agent);
}

#[test]
fn verify_refuses_bad_requests_with_what_is_wrong() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let (_img, mtd, mut agent) = one_disk_caught_up(w, &[]);
    for (path, body, status, says) in [
        ("/v1/groups/nope/verify", "{}", 404, "nope"),
        (
            "/v1/groups/g1/verify",
            r#"{"deadline_secs":0}"#,
            400,
            "deadline_secs 0",
        ),
        ("/v1/groups/g1/verify", r#"{"point":"seq:x"}"#, 400, "seq:x"),
        ("/v1/groups/g1/verify", r#"{"repare":true}"#, 422, "repare"),
    ] {
        let (code, text) = mtd.control_post(path, body);
        assert_eq!(code, status, "{path} {body}: {text}");
        assert!(text.contains(says), "{path} {body}: {text}");
    }
    agent.stop();
    let (code, text) = mtd.control_post("/v1/groups/g1/verify", "{}");
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("no agent is connected"), "{text}");
}
