//! Shortages anywhere in the target's write side pause acknowledgements and resume once the
//! resource comes back, losing nothing: no inodes left when a new journal segment is needed, a
//! 100% full disk that only the merger (on its space reserve) can free, and a descriptor limit
//! lowered under the running daemon with `prlimit`. Each runs the real daemon on a small
//! loop-mounted ext4 (needs root) and checks the latest point against the load generator's model.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::smallfs::SmallFs;
use common::*;
use rewind_benches::harness::http::{free_port, get};

const RECORD: u64 = 64 << 10;

fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
        "{test} needs root (loop devices, mounts, prlimit)"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// Where the harness's daemon keeps its data in `work` (the small file system goes there; the
/// daemon's log and sockets stay beside it, so a full disk does not silence the log).
fn data_dir(work: &tempfile::TempDir) -> std::path::PathBuf {
    work.path().join("data")
}

fn workload(group: &str, disk_mib: u64) -> Workload {
    Workload {
        group: group.into(),
        disks: vec![format!("sda:{disk_mib}MiB")],
        seed: 12,
        pattern: "seq",
        record_size: "64KiB",
        payload: "random",
    }
}

/// Run the load generator up to `total_mib` MiB of records (from where the target is) in the
/// background, its acked seq kept in `state`.
fn send(d: &Mtd, wl: &Workload, total_mib: u64, state: &Path) -> Proc {
    Proc::spawn(
        wl.run_cmd(&d.target(), &format!("{total_mib}MiB"))
            .args([
                "--batch-bytes",
                "256KiB",
                "--ack-timeout",
                "300s",
                "--state",
            ])
            .arg(state),
    )
}

fn finish(lg: &mut Proc, d: &Mtd, what: &str) {
    let child = lg.0.as_mut().expect("running");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "load generator did not finish {what}; log:\n{}",
            d.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    lg.0 = None;
    assert!(
        status.success(),
        "load generator failed {what}; log:\n{}",
        d.log_tail(40)
    );
}

/// Wait until `cond` holds (panics with the daemon's log after `limit`).
fn wait_for(d: &Mtd, limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "{what} not seen in {limit:?}; log:\n{}",
            d.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Acknowledgements stand still for `secs` seconds; returns where.
fn assert_acks_pause(state: &Path, secs: u64) -> u64 {
    let at = acked(state);
    std::thread::sleep(Duration::from_secs(secs));
    assert_eq!(acked(state), at, "acknowledgements must pause");
    at
}

/// The lines of `/metrics` that start with `prefix`.
fn metric_lines(addr: &str, prefix: &str) -> Vec<String> {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Stop the daemon, dump `latest` and compare it with the model at `records`.
fn verify_latest(d: &mut Mtd, wl: &Workload, out: &Path, records: u64) {
    d.terminate();
    let img = out.join("latest.img");
    assert_ok(&dump(&d.data_dir, &wl.group, "sda", "latest", &img), "dump");
    assert_ok(&wl.verify(&img, 0, records), "latest equals the source");
}

/// No inode left when the writer needs its next segment: it pauses on `create segment` (the
/// metrics say so, with the file), and resumes when inodes are freed.
#[test]
fn no_inodes_for_a_new_segment_pauses_then_resumes() {
    if !require_root("no_inodes_for_a_new_segment_pauses_then_resumes") {
        return;
    }
    let work = tempdir();
    let fs = SmallFs::new(work.path(), 128, &["-N", "128"], &data_dir(&work));
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut d = Mtd::start_engine(
        work.path(),
        "uring",
        &["--segment-size", "1MiB", "--metrics-listen", &metrics],
    );
    let wl = workload("inodes", 16);
    let state = work.path().join("state");
    // The group and its first segments exist; then every inode goes.
    finish(&mut send(&d, &wl, 2, &state), &d, "before the fill");
    let fillers = fs.use_all_inodes("fill");
    let total = 12;
    let mut lg = send(&d, &wl, total, &state);
    let paused = |l: &String| {
        l.contains("component=\"writer\"")
            && l.contains("resource=\"space\"")
            && l.contains("step=\"create segment\"")
            && l.contains("/journal/seg-")
    };
    wait_for(
        &d,
        Duration::from_secs(60),
        "a writer pause on create segment",
        || {
            metric_lines(&metrics, "rewind_store_paused{")
                .iter()
                .any(paused)
        },
    );
    assert!(
        metric_lines(&metrics, "rewind_store_health{")
            .contains(&"rewind_store_health{state=\"no_space\"} 1".to_string()),
        "{:?}",
        metric_lines(&metrics, "rewind_store_health")
    );
    let at = assert_acks_pause(&state, 2);
    assert!(at < total * 16, "everything fit: the fill did not bite");
    for f in &fillers {
        std::fs::remove_file(f).unwrap();
    }
    finish(&mut lg, &d, "after inodes were freed");
    assert_eq!(acked(&state), (total << 20) / RECORD);
    assert!(metric_lines(&metrics, "rewind_store_paused{").is_empty());
    assert!(
        metric_lines(&metrics, "rewind_store_pauses_total{resource=\"space\"}")[0].ends_with(" 1")
    );
    let log = d.log_text();
    assert!(!log.contains("store failed"), "{log}");
    verify_latest(&mut d, &wl, work.path(), (total << 20) / RECORD);
}

/// A 100% full disk whose journal has expired segments: the merger spends its space reserve
/// to fold them (the manifest's new horizon needs a block the disk no longer has), which frees
/// journal space, and replication goes on with the filler still in place.
#[test]
fn merger_frees_space_on_a_full_disk() {
    if !require_root("merger_frees_space_on_a_full_disk") {
        return;
    }
    let work = tempdir();
    let fs = SmallFs::new(work.path(), 64, &[], &data_dir(&work));
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut d = Mtd::start_engine(
        work.path(),
        "uring",
        &[
            "--segment-size",
            "1MiB",
            "--retention",
            "3s",
            "--seal-after",
            "1s",
            "--merge-interval",
            "200ms",
            "--metrics-listen",
            &metrics,
        ],
    );
    let wl = workload("merge", 8);
    let state = work.path().join("state");
    finish(&mut send(&d, &wl, 8, &state), &d, "before the fill");
    // Every block of the disk is in the base (allocated): later merges write in place.
    let base = d.data_dir.join("groups/merge/base/sda.img");
    let journal = d.data_dir.join("groups/merge/journal");
    wait_for(&d, Duration::from_secs(30), "the journal merged", || {
        let blocks = std::os::unix::fs::MetadataExt::blocks(&base.metadata().unwrap());
        let segs = std::fs::read_dir(&journal).unwrap().count();
        blocks * 512 >= 8 << 20 && segs <= 1
    });
    // History that will expire while the disk is full: what the merger can fold.
    finish(&mut send(&d, &wl, 12, &state), &d, "before the fill");
    let filler = fs.fill("filler");
    assert!(fs.avail() < 64 << 10, "not full: {} bytes free", fs.avail());
    let total = 18;
    let mut lg = send(&d, &wl, total, &state);
    finish(&mut lg, &d, "on a full disk");
    assert_eq!(acked(&state), (total << 20) / RECORD);
    assert!(filler.exists());
    let log = d.log_text();
    assert!(
        log.contains("writer is paused"),
        "the disk never stopped the writer: {log}"
    );
    assert!(log.contains("released the space reserve"), "{log}");
    assert!(!log.contains("store failed"), "{log}");
    let reserve = metric_lines(&metrics, "rewind_store_space_reserve_bytes");
    assert_eq!(reserve.len(), 1, "{reserve:?}");
    eprintln!("{reserve:?}; {} bytes free", fs.avail());
    verify_latest(&mut d, &wl, work.path(), (total << 20) / RECORD);
}

fn open_fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// Set the soft descriptor limit of `pid` (`prlimit --nofile=SOFT:`: the hard limit stays, so
/// the soft one can be raised again without CAP_SYS_RESOURCE).
fn set_nofile(pid: i32, soft: u64) {
    run_ok(Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")]));
}

/// The (soft, hard) descriptor limits of `pid`, from /proc.
fn nofile(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

/// The daemon's descriptor limit lowered to what it has open: the writer pauses when it next
/// needs a file (seal or create a segment), and resumes when the limit is raised again.
#[test]
fn descriptor_limit_pauses_then_resumes() {
    if !require_root("descriptor_limit_pauses_then_resumes") {
        return;
    }
    assert!(have_tool("prlimit"), "prlimit (util-linux) is needed");
    let work = tempdir();
    let _fs = SmallFs::new(work.path(), 128, &[], &data_dir(&work));
    let mut d = Mtd::start_engine(work.path(), "uring", &["--segment-size", "1MiB"]);
    let wl = workload("fds", 16);
    let state = work.path().join("state");
    finish(&mut send(&d, &wl, 2, &state), &d, "before the limit");
    let total = 12;
    // Room for the agent's connection and nothing more: the writer runs out when it next
    // needs a file (sealing the full segment, or creating the next).
    let (soft, _) = nofile(d.pid());
    set_nofile(d.pid(), open_fds(d.pid()) + 1);
    assert_eq!(nofile(d.pid()).0, open_fds(d.pid()) + 1);
    let mut lg = send(&d, &wl, total, &state);
    let writer_paused =
        |l: &str| l.contains("out of file descriptors") && l.contains("writer is paused");
    wait_for(
        &d,
        Duration::from_secs(60),
        "a writer descriptor pause",
        || d.log_text().lines().any(writer_paused),
    );
    let at = assert_acks_pause(&state, 2);
    assert!(at < (total << 20) / RECORD);
    let log = d.log_text();
    let line = log.lines().find(|l| writer_paused(l)).unwrap();
    eprintln!("paused: {line}");
    set_nofile(d.pid(), soft);
    finish(&mut lg, &d, "after the limit was raised");
    assert_eq!(acked(&state), (total << 20) / RECORD);
    let log = d.log_text();
    assert!(log.contains("file descriptors available again"), "{log}");
    assert!(!log.contains("store failed"), "{log}");
    verify_latest(&mut d, &wl, work.path(), (total << 20) / RECORD);
}

/// `qemu-io -f raw -c CMD... URI`: its output (qemu-io reports a failed command on stdout and
/// still exits 0, so callers read the text).
fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = run(c.arg(uri));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// On a 100% full disk an overlay write through NBD fails with ENOSPC for that write only, an
/// overlay create fails whole (nothing left behind), the writer pauses, and shortening the
/// retention (on the space reserve) lets the merger free the journal: replication resumes,
/// latest equals the source, and the overlay takes writes again.
#[test]
fn overlays_and_retention_on_a_full_disk() {
    if !require_root("overlays_and_retention_on_a_full_disk") {
        return;
    }
    assert!(have_tool("qemu-io"), "qemu-io (qemu-utils) is needed");
    let work = tempdir();
    let fs = SmallFs::new(work.path(), 64, &[], &data_dir(&work));
    let mut d = Mtd::start_engine(
        work.path(),
        "uring",
        &["--segment-size", "1MiB", "--merge-interval", "200ms"],
    );
    // 12 MiB of history over a 4 MiB disk: merging it frees 8 MiB more than the base takes.
    // (The overlay pins its point: history after it stays until the overlay goes.)
    let wl = workload("ov", 4);
    let state = work.path().join("state");
    finish(&mut send(&d, &wl, 12, &state), &d, "before the fill");
    d.rewind(&["overlay", "create", "o1", "ov/sda@latest"]);
    let filler = fs.fill("filler");
    assert!(fs.avail() < 64 << 10, "not full: {} bytes free", fs.avail());

    let o1 = d.nbd_uri("ov/sda@overlay:o1");
    let out = qemu_io(&o1, &["write -P 0xab 0 4M"]);
    assert!(out.contains("No space left on device"), "{out}");
    let out = qemu_io(&o1, &["read 0 1M", "flush"]);
    assert!(
        !out.contains("failed"),
        "the overlay still reads and flushes: {out}"
    );

    let err = d.rewind_fails(&["overlay", "create", "o2", "ov/sda@latest"]);
    assert!(err.contains("No space left on device"), "{err}");
    let overlays = d.data_dir.join("overlays");
    let left: Vec<_> = std::fs::read_dir(&overlays)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["o1"], "a failed create leaves nothing behind");

    let total = 16;
    let mut lg = send(&d, &wl, total, &state);
    wait_for(&d, Duration::from_secs(30), "the writer paused", || {
        d.log_text().contains("writer is paused")
    });
    let at = assert_acks_pause(&state, 2);
    assert!(at < (total << 20) / RECORD);
    // What frees space here: a shorter retention, written on the reserve.
    d.rewind(&["retention", "ov", "1s"]);
    finish(&mut lg, &d, "after the retention was shortened");
    assert_eq!(acked(&state), (total << 20) / RECORD);
    assert!(filler.exists());

    let out = qemu_io(&o1, &["write -P 0xcd 0 64k", "read -P 0xcd 0 64k", "flush"]);
    assert!(
        !out.contains("failed") && !out.contains("verification"),
        "the overlay takes writes again: {out}"
    );
    let log = d.log_text();
    assert!(!log.contains("store failed"), "{log}");
    verify_latest(&mut d, &wl, work.path(), (total << 20) / RECORD);
}

/// A merge step that moved the horizon but did not write the base yet (a stop, a crash, or a
/// full disk in between) leaves segments at or below the horizon: a reader indexes them, so the
/// latest point still reads what was written. Here `dump` reads it (it opens the store
/// read-only and finishes no merge). Found by `merger_frees_space_on_a_full_disk`, whose stop
/// of the daemon can fall in that gap.
#[test]
fn a_merge_interrupted_after_its_horizon_still_reads_latest() {
    let work = tempdir();
    let mut d = Mtd::start_engine(
        work.path(),
        "uring",
        &["--segment-size", "1MiB", "--seal-after", "1s"],
    );
    let wl = workload("interrupted", 4);
    let state = work.path().join("state");
    let total = 12;
    finish(&mut send(&d, &wl, total, &state), &d, "the writes");
    d.terminate();
    // Step 1 of a merge alone: the horizon moved past every record, the base untouched.
    let manifest = d.data_dir.join("groups/interrupted/group.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let records = (total << 20) / RECORD;
    m["horizon_seq"] = records.into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let img = work.path().join("latest.img");
    assert_ok(&dump(&d.data_dir, &wl.group, "sda", "latest", &img), "dump");
    assert_ok(&wl.verify(&img, 0, records), "latest equals the source");
}
