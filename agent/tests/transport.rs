//! The capture files' two FUSE transports, end to end: FUSE over io_uring (our own server) and
//! `/dev/fuse` (fuser), each under ext4, fio with verification and whole-device reads, and the
//! target's copy compared byte for byte with the source.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::{free_port, get};
use common::*;

const DISK_SIZE: u64 = 512 << 20;

/// Whether this kernel has FUSE over io_uring (its module parameter exists). When it does not,
/// says so and skips, unless `REWIND_REQUIRE_TOOLS` is set (the suite): then it fails.
fn kernel_has_fuse_uring(test: &str) -> bool {
    if Path::new("/sys/module/fuse/parameters/enable_uring").exists() {
        return true;
    }
    let what = format!("{test} needs a kernel with CONFIG_FUSE_IO_URING");
    assert!(std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(), "{what}");
    eprintln!("SKIPPED {what}");
    false
}

/// fio with crc32c verification on `file`: `rw` at block size `bs`, queue depth 32.
fn fio_verify(file: &Path, rw: &str, bs: &str) {
    run_ok(
        Command::new("fio")
            .args([
                "--name=verify",
                "--ioengine=libaio",
                "--direct=1",
                "--iodepth=32",
            ])
            .args([&format!("--rw={rw}"), &format!("--bs={bs}"), "--size=96M"])
            .args([
                "--verify=crc32c",
                "--verify_fatal=1",
                "--verify_state_save=0",
            ])
            .arg(format!("--filename={}", file.display())),
    );
}

/// mkfs.ext4 on the protected device, files, fio verify (random 4 KiB and sequential 1 MiB)
/// inside it and on the raw device's tail, the whole device read back and compared with the
/// backing image, e2fsck; then the target's latest equals the source byte for byte.
fn workload(extra: &[&str], log_says: &str) {
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    sparse_image(&img, DISK_SIZE);
    let mut mtd = Mtd::start(w);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = extra.to_vec();
    args.extend(["--metrics-listen", &metrics]);
    let mut agent = Agent::start(w, "g1", &[("d0", &img)], &mtd.target(), &args);
    let log = agent.log_text();
    assert!(
        log.contains(log_says),
        "the agent's log names its transport ({log_says:?}):\n{log}"
    );
    let dev = agent.link("d0");
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let mnt = w.join("m");
    let mut mount = Mount::new(&dev, &mnt);
    for i in 0..4u64 {
        fs::write(
            mnt.join(format!("f{i}")),
            Rng::new(i).bytes((3 << 20) + 4096 * i as usize),
        )
        .expect("write a file");
    }
    fio_verify(&mnt.join("rand.dat"), "randwrite", "4k");
    fio_verify(&mnt.join("seq.dat"), "write", "1M");
    mount.umount();
    run_ok(Command::new("e2fsck").args(["-fn"]).arg(&dev));
    // Reads through the device return exactly what the backing image holds.
    run_ok(Command::new("cmp").arg(&dev).arg(&img));
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert!(st.connected);
    // Every transport times its writes for `rewind_capture_seconds`: thousands were made.
    let (status, text) = get(&metrics, "/metrics");
    assert_eq!(status, 200);
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("rewind_capture_seconds_count{group=\"g1\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no capture latency count in:\n{text}"));
    assert!(count >= 1000.0, "only {count} writes timed:\n{text}");
    agent.stop();
    let log = agent.log_text();
    assert!(
        !log.contains("requests arrive on /dev/fuse"),
        "every request went through the transport asked for:\n{log}"
    );
    let latest = mtd.stop_and_check_latest("g1", "d0", &img);
    assert_fsck_clean(&latest);
}

#[test]
fn uring_transport_replicates_ext4_and_fio_exactly() {
    if !can_run() || !kernel_has_fuse_uring("uring_transport_replicates_ext4_and_fio_exactly") {
        return;
    }
    workload(
        &["--fuse-transport", "uring"],
        "serving over FUSE over io_uring",
    );
}

#[test]
fn dev_fuse_transport_replicates_ext4_and_fio_exactly() {
    if !can_run() {
        return;
    }
    workload(
        &["--fuse-transport", "dev-fuse"],
        "serving through /dev/fuse (fuser)",
    );
}

/// The capture files unmounted under a running agent (here by hand: loop device detached, then
/// `umount`) end the threads that serve them. An agent that can no longer capture must not go
/// on as if it did: it exits at once with status 70 and says why. (On the io_uring transport
/// the same watch covers a queue thread that panics, which would otherwise leave every write
/// from its CPU waiting for ever.)
fn capture_ends_under_the_agent(extra: &[&str]) {
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    sparse_image(&img, 64 << 20);
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "g1", &[("d0", &img)], &mtd.target(), extra);
    let dev = fs::canonicalize(agent.link("d0")).expect("the agent's device");
    run_ok(
        Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={}", dev.display()))
            .args(["bs=1M", "count=4", "oflag=direct", "status=none"]),
    );
    agent.wait_caught_up(Duration::from_secs(60));
    run_ok(Command::new("losetup").arg("-d").arg(&dev));
    // Detaching is asynchronous: wait until the loop device lets the file go.
    let t0 = std::time::Instant::now();
    while Command::new("umount")
        .arg(&agent.mount_dir)
        .status()
        .is_ok_and(|s| !s.success())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the capture files stay busy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = agent.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "the agent runs on without its capture:\n{}",
            agent.log_text()
        )
    });
    assert_eq!(status.code(), Some(70), "{}", agent.log_text());
    assert!(
        agent
            .log_text()
            .contains("ended while the capture files are mounted"),
        "{}",
        agent.log_text()
    );
    mtd.stop();
}

#[test]
fn an_agent_whose_uring_capture_ends_under_it_exits() {
    if !can_run() || !kernel_has_fuse_uring("an_agent_whose_uring_capture_ends_under_it_exits") {
        return;
    }
    capture_ends_under_the_agent(&["--fuse-transport", "uring"]);
}

#[test]
fn an_agent_whose_dev_fuse_capture_ends_under_it_exits() {
    if !can_run() {
        return;
    }
    capture_ends_under_the_agent(&["--fuse-transport", "dev-fuse"]);
}
