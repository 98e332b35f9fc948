//! End to end: a real `rewind-mtd serve` and `rewind-agent run` as processes, ext4 and fio on the
//! protected device, tags, and the target's dumps compared byte for byte with the source.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rewind_agent::state::status::SyncState;

const DISK_SIZE: u64 = 256 << 20;

fn make_image(path: &Path) {
    make_image_of(path, DISK_SIZE);
}

fn make_image_of(path: &Path, size: u64) {
    let f = fs::File::create(path).expect("image");
    f.set_len(size).expect("size image");
}

/// Writes `len` bytes of pseudo-random data (seeded) into `path` at `offset`.
fn write_random(path: &Path, offset: u64, len: usize, seed: u64) {
    let data = Rng::new(seed).bytes(len);
    let f = fs::OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(&data, offset).expect("write");
}

fn fio_verify(file: &Path) {
    run_ok(
        Command::new("fio")
            .args([
                "--name=verify",
                "--rw=randwrite",
                "--bs=4k",
                "--size=64M",
                "--ioengine=libaio",
                "--iodepth=16",
                "--direct=1",
                "--verify=crc32c",
                "--verify_fatal=1",
                "--verify_state_save=0",
            ])
            .arg(format!("--filename={}", file.display())),
    );
}

/// A 1 GiB image: mkfs.ext4 on the protected device, files written and deleted, fio with crc32c verify, a tag
/// taken while frozen (with a copy of the source at that moment), more writes, a second tag with
/// `--freeze`, umount; once the agent reports caught up, the target's dumps at the first tag and
/// at latest equal the source at those moments byte for byte, and e2fsck is clean on both tags.
#[test]
fn ext4_fio_and_tags_replicate_byte_for_byte() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    make_image_of(&img, 1 << 30);
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "g1", &[("d0", &img)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let mnt = w.join("m");
    let mut mount = Mount::new(&dev, &mnt);

    // Files written, some deleted.
    for i in 0..8u64 {
        let mut f = fs::File::create(mnt.join(format!("file{i}"))).unwrap();
        let mut x = i + 1;
        let data: Vec<u8> = (0..(1 << 20) + i as usize * 4096)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 33) as u8
            })
            .collect();
        f.write_all(&data).unwrap();
    }
    for i in (0..8).step_by(3) {
        fs::remove_file(mnt.join(format!("file{i}"))).unwrap();
    }
    fio_verify(&mnt.join("fio.dat"));
    run_ok(Command::new("sync").arg("-f").arg(&mnt));

    // Tag 1 while frozen by hand, copying the source at exactly that point.
    run_ok(Command::new("fsfreeze").arg("-f").arg(&mnt));
    let at_t1 = w.join("source-at-t1.img");
    let copied = fs::copy(&img, &at_t1);
    let t1 = agent.tag("t1", &[]);
    run_ok(Command::new("fsfreeze").arg("-u").arg(&mnt));
    copied.expect("copy the source at t1");

    // Keep writing, then tag 2 through the agent's own freeze.
    fs::write(mnt.join("after-t1"), vec![7u8; 3 << 20]).unwrap();
    fs::remove_file(mnt.join("file1")).unwrap();
    let t2 = agent.tag("t2", &[&mnt]);
    assert!(t2 > t1, "t2 {t2} after t1 {t1}");
    fs::write(mnt.join("after-t2"), vec![9u8; 1 << 20]).unwrap();
    mount.umount();

    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert!(st.connected);
    assert_eq!(st.sync, SyncState::Done);
    assert_eq!(st.disks[0].sync_percent, 100.0);
    agent.stop();
    let latest = mtd.stop_and_check_latest("g1", "d0", &img);
    let d1 = w.join("t1.img");
    mtd.dump("g1", "d0", "tag:t1", &d1);
    assert_same(&d1, &at_t1);
    assert_fsck_clean(&d1);
    let d2 = w.join("t2.img");
    mtd.dump("g1", "d0", "tag:t2", &d2);
    assert_fsck_clean(&d2);
    assert_fsck_clean(&latest);
}

/// An image that already holds data (ext4 plus random data) is synced while a writer hammers
/// the device with direct writes at random offsets, including during the sync (the agent starts
/// before the target, so the sync begins only once writes are running). The target at latest
/// equals the source byte for byte.
#[test]
fn initial_sync_is_correct_under_concurrent_writes() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    make_image(&img);
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
    for k in 0..12u64 {
        write_random(&img, (k * 19 + 3) << 20, 4 << 20, k + 100);
    }

    // The target is not up yet: the agent serves the device and waits to sync.
    let sock = w.join("mtd.sock");
    let mut agent = Agent::start(
        w,
        "g2",
        &[("d0", &img)],
        &format!("unix:{}", sock.display()),
        &["--max-queue-mib", "16", "--level", "3"],
    );
    assert_eq!(agent.status().sync, SyncState::Pending);
    let dev = agent.link("d0");

    let stop = Arc::new(AtomicBool::new(false));
    let during_sync = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = Arc::clone(&stop);
        let during = Arc::clone(&during_sync);
        let state = agent.state.clone();
        let dev = dev.clone();
        std::thread::spawn(move || {
            let f = open_direct(&dev);
            let mut buf = rewind_linux::aligned::AlignedBuf::new(64 << 10);
            let mut rng = Rng::new(0x9e3779b97f4a7c15);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let x = rng.next_u64();
                buf.fill((x >> 24) as u8);
                buf[..8].copy_from_slice(&n.to_le_bytes());
                let off = (x % (DISK_SIZE / 4096 - 16)) * 4096;
                f.write_all_at(&buf, off)
                    .expect("write to the protected device");
                n += 1;
                if n.is_multiple_of(16) {
                    if let Ok(st) = rewind_agent::state::status::read(&state) {
                        if st.sync == SyncState::Running {
                            during.fetch_add(16, Ordering::Relaxed);
                        }
                    }
                }
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut mtd = Mtd::start(w);
    assert_eq!(mtd.sock, sock);

    // Keep writing until the sync is through, and a moment longer.
    let t0 = Instant::now();
    let mut saw_partial = false;
    loop {
        let st = agent.status();
        let p = st.disks[0].sync_percent;
        saw_partial |= p > 0.0 && p < 100.0;
        if matches!(st.sync, SyncState::Done) {
            break;
        }
        assert!(
            st.sync != SyncState::Failed,
            "sync failed:\n{}",
            agent.log_text()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "sync did not finish: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().expect("writer");
    eprintln!(
        "writes: {writes}, about {} while the sync ran; saw a partial percent: {saw_partial}",
        during_sync.load(Ordering::Relaxed)
    );
    assert!(writes > 0);

    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert!(st.disks[0].sync_sent_bytes >= 48 << 20, "{st:?}");
    assert!(st.sync_bytes_per_sec.is_some_and(|r| r > 0), "{st:?}");
    assert!(
        st.disks[0].sync_sent_bytes < DISK_SIZE,
        "zeros and holes are skipped: {st:?}"
    );
    agent.stop();
    mtd.stop_and_check_latest("g2", "d0", &img);

    // The sync is bracketed by SyncBegin and SyncEnd tags (points inside are not recoverable).
    let out = run_ok(
        Command::new(bin("rewind-mtd"))
            .arg("inspect")
            .arg("--data-dir")
            .arg(&mtd.data_dir)
            .arg("--json"),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect json");
    let group = report["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == "g2"))
        .unwrap_or_else(|| panic!("no group g2 in {report}"));
    let tag_seq = |kind: &str| {
        let found: Vec<u64> = group["tags"]
            .as_array()
            .expect("tags list")
            .iter()
            .filter(|t| t["kind"] == kind && t["name"] == "initial-sync")
            .map(|t| t["seq"].as_u64().expect("tag seq"))
            .collect();
        assert_eq!(found.len(), 1, "one {kind} tag: {}", group["tags"]);
        found[0]
    };
    let begin = tag_seq("sync-begin");
    let end = tag_seq("sync-end");
    assert!(begin >= 1 && begin <= end, "begin {begin}, end {end}");
    assert!(
        end <= st.last_seq,
        "end {end} after the last seq {}",
        st.last_seq
    );
}

/// fio at queue depth 64 over a small region with `norandommap`: many writes to the same blocks
/// are in flight at once and reach the agent in parallel. The replica still equals the source
/// byte for byte (overlapping writes are recorded in the order they hit the disk).
#[test]
fn overlapping_parallel_writes_replicate_exactly() {
    overlapping_parallel_writes(&[]);
}

/// The same with the synchronous write engine.
#[test]
fn overlapping_parallel_writes_replicate_exactly_sync_engine() {
    overlapping_parallel_writes(&["--io-engine", "sync"]);
}

fn overlapping_parallel_writes(extra: &[&str]) {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    make_image(&img);
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "g5", &[("d0", &img)], &mtd.target(), extra);
    let dev = agent.link("d0");
    for bs in ["4k", "64k"] {
        run_ok(
            Command::new("fio")
                .args([
                    "--name=overlap",
                    "--rw=randwrite",
                    "--ioengine=libaio",
                    "--iodepth=64",
                    "--direct=1",
                    "--norandommap",
                    "--randrepeat=0",
                    "--size=4M",
                    "--io_size=48M",
                ])
                .arg(format!("--bs={bs}"))
                .arg(format!("--filename={}", dev.display())),
        );
    }
    agent.wait_caught_up(Duration::from_secs(120));
    agent.stop();
    mtd.stop_and_check_latest("g5", "d0", &img);
}

/// A tag asked for while the initial sync runs waits for it (a point inside the sync would
/// not be recoverable), then lands on a recoverable point equal to the source.
#[test]
fn a_tag_during_the_initial_sync_waits_for_it() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    make_image(&img);
    for k in 0..4u64 {
        write_random(&img, k * (16 << 20), 8 << 20, k + 7);
    }
    let mut mtd = Mtd::start(w);
    // Level 19 on incompressible data: a sync of a few seconds.
    let slow = ["--level", "19", "--fixed-level", "--max-queue-mib", "16"];
    let mut agent = Agent::start(w, "gt", &[("d0", &img)], &mtd.target(), &slow);
    let st = agent.fresh_status();
    assert!(
        matches!(st.sync, SyncState::Pending | SyncState::Running),
        "the tag is asked for during the sync: {st:?}"
    );
    agent.tag("after-sync", &[]);
    let st = agent.status();
    assert!(
        matches!(st.sync, SyncState::Done),
        "the tag waited for the sync: {st:?}"
    );
    agent.wait_caught_up(Duration::from_secs(120));
    agent.stop();
    mtd.stop();
    let at = w.join("after-sync.img");
    mtd.dump("gt", "d0", "tag:after-sync", &at);
    assert_same(&at, &img);
}
