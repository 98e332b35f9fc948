//! Flush-boundary replay (after xfstests' generic/482 with dm-log-writes): an ext4 workload on
//! the protected device fsyncs its files; the point right after each fsync (the agent's
//! last seq once the fsync returned) is opened through a throwaway overlay (`rewind attach
//! --writable`), mounted once so the journal replays, unmounted, and must then pass
//! `e2fsck -fn` and hold every file fsynced before it, byte for byte; so must a sample of the
//! points between flushes.
//!
//! What reaches the agent (measured, see the report of issue 12): the loop device has a
//! volatile write cache and no FUA (`queue/write_cache` = "write back", `queue/fua` = 0), so
//! the block layer turns each FUA write into a write plus a flush; every flush and fsync(2) of
//! the device arrives as a FUSE fsync and becomes one fdatasync of the agent's backing disk. No
//! flush marker travels to the target, so the point after a flush is found from the agent's
//! status here.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rewind_benches::harness::*;

const DISK: u64 = 128 << 20;

/// File `i`'s content: deterministic, a few hundred KiB.
fn content(i: u64) -> Vec<u8> {
    Rng::new(i + 1).bytes(4096 * (1 + (i as usize * 37) % 96))
}

/// Writes file `i` under `dir` and makes it durable (the file, then its directory entry).
fn write_durably(dir: &Path, i: u64) {
    let p = dir.join(format!("f{i}"));
    fs::write(&p, content(i)).expect("write a file");
    fs::File::open(&p)
        .and_then(|f| f.sync_all())
        .expect("fsync");
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .expect("fsync dir");
}

#[test]
fn every_point_after_a_flush_passes_fsck_and_holds_fsynced_files() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let views = w.join("views");
    let mtd = Mtd::start_with(w, &["--views", views.to_str().unwrap()]);
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(DISK).unwrap();
    let agent = Agent::start(w, "fp", &[("d0", &img)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let mnt = w.join("m");
    let mut mount = Mount::new(&dev, &mnt);
    // (point seq, files fsynced before it)
    let mut points = Vec::new();
    let mut files = 0u64;
    for round in 0..6u64 {
        for _ in 0..1 + round % 3 {
            write_durably(&mnt, files);
            files += 1;
        }
        // Writes no one fsynced yet, to be cut off at the point (or not) either way.
        fs::write(mnt.join(format!("loose{round}")), content(1000 + round)).unwrap();
        // The status written after the fsync returned: every write the fsync covered is
        // recorded at or before its last seq.
        points.push((agent.fresh_status().last_seq, files));
    }
    mount.umount();
    agent.wait_caught_up(Duration::from_secs(120));
    // Points between flushes too (every 3rd seq): any prefix of the writes is a state a disk
    // with a volatile cache may be left in, so ext4 must recover it; it holds at least the
    // files fsynced before the last flush point at or before it.
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let mut all = points.clone();
    for seq in (first..last).step_by(3) {
        if let Some(&(_, n)) = points.iter().rev().find(|(s, _)| *s <= seq) {
            all.push((seq, n));
        }
    }
    all.sort_unstable();
    all.dedup();
    let check = w.join("check");
    for (seq, fsynced) in &all {
        let export = format!("fp/d0@seq:{seq}");
        let out = run_ok(mtd.rewind_cmd().args(["attach", "--writable", &export]));
        let loopdev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let guard = Loop(loopdev.clone());
        {
            // Mounting replays the journal into the throwaway overlay.
            let mut m = Mount::new(Path::new(&loopdev), &check);
            for i in 0..*fsynced {
                let got = fs::read(check.join(format!("f{i}"))).unwrap_or_else(|e| {
                    panic!("point seq {seq}: file f{i} fsynced before it: {e}")
                });
                assert!(got == content(i), "point seq {seq}: f{i} differs");
            }
            m.umount();
        }
        let fsck = run(Command::new("e2fsck").arg("-fn").arg(&loopdev));
        assert!(
            fsck.status.success(),
            "e2fsck -fn at seq {seq}: {}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        run_ok(mtd.rewind_cmd().args(["detach", &loopdev]));
        std::mem::forget(guard);
    }
    eprintln!(
        "flush points: {} after flushes ({points:?}), {} in all",
        points.len(),
        all.len()
    );
}
