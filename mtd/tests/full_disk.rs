//! A full disk pauses acknowledgements and says so; once space is freed replication resumes and
//! nothing is lost. Runs on a small ext4 file system in a loop-mounted image (needs root).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::smallfs::SmallFs;
use common::*;

#[test]
fn full_disk_pauses_then_resumes_losing_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED full_disk_pauses_then_resumes_losing_nothing: needs root to loop-mount a small file system");
        return;
    }
    let work = tempdir();
    // The data directory is the small file system; the daemon's log and sockets stay beside
    // it in `work`, so the full disk does not silence the log the test reads.
    let fs = SmallFs::new(work.path(), 96, &[], &work.path().join("data"));
    let filler = fs.dir.join("filler");
    let keep_free = 6u64 << 20;
    run_ok(
        Command::new("fallocate")
            .args(["-l", &(fs.avail() - keep_free).to_string()])
            .arg(&filler),
    );

    let mut d = Mtd::start_engine(work.path(), "uring", &["--segment-size", "2MiB"]);
    let wl = Workload {
        group: "full".into(),
        disks: vec!["sda:32MiB".into()],
        seed: 9,
        pattern: "seq",
        record_size: "64KiB",
        payload: "random",
    };
    let state = work.path().join("state");
    let total_records = (24u64 << 20) / (64 << 10);
    let mut lg = Proc::spawn(
        wl.run_cmd(&d.target(), "24MiB")
            .args(["--batch-bytes", "512KiB", "--state"])
            .arg(&state),
    );

    let t0 = Instant::now();
    while !d.log_text().contains("no space left") {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no ENOSPC report; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let paused_at = acked(&state);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        acked(&state),
        paused_at,
        "acknowledgements must pause while the disk is full"
    );
    assert!(
        paused_at < total_records,
        "everything fit; the test did not fill the disk"
    );

    std::fs::remove_file(&filler).unwrap();
    let status = lg.wait_timeout(Duration::from_secs(120));
    assert!(
        status.success(),
        "load generator failed after space was freed; log:\n{}",
        d.log_text()
    );
    assert_eq!(acked(&state), total_records);
    let log = d.log_text();
    assert!(log.contains("replication resumes"), "{log}");
    assert!(!log.contains("store failed"), "{log}");
    d.terminate();

    let img = work.path().join("latest.img");
    assert_ok(&dump(&d.data_dir, "full", "sda", "latest", &img), "dump");
    assert_ok(&wl.verify(&img, 0, total_records), "verify after the pause");
    drop(d);
}
