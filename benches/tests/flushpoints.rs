//! Flush-boundary replay (after xfstests' generic/482 with dm-log-writes), on ext4 and on xfs:
//! a workload on the protected device fsyncs its files; the point right after each fsync (the
//! agent's last seq once the fsync returned) is opened through a throwaway overlay (`rewind
//! attach --writable`), mounted once so the journal (ext4) or the log (xfs) replays, unmounted,
//! and must then pass the file system's read-only check (`e2fsck -fn`, `xfs_repair -n`) and hold
//! every file fsynced before it, byte for byte; so must a sample of the points between flushes.
//! One workload and one walk over the points serve both file systems; only making the file
//! system and checking it differ.
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

/// The file system under test: how it is made and checked, and how big its disk is.
#[derive(Clone, Copy, Debug)]
enum Fs {
    Ext4,
    Xfs,
}

impl Fs {
    /// The disk: ext4 is happy on little; mkfs.xfs (recent xfsprogs, 6.1 here) refuses a file
    /// system of 300 MiB or less unless told it is a test, and its default log is then 64 MiB.
    fn disk_bytes(self) -> u64 {
        match self {
            Fs::Ext4 => 128 << 20,
            Fs::Xfs => 320 << 20,
        }
    }

    /// The tools this file system's test needs beyond `can_run`'s.
    fn tools(self) -> &'static [&'static str] {
        match self {
            Fs::Ext4 => &[],
            Fs::Xfs => &["mkfs.xfs", "xfs_repair"],
        }
    }

    fn mkfs(self, dev: &Path) {
        match self {
            Fs::Ext4 => run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(dev)),
            // -K: no discard of the whole device first (it tells the test nothing and costs
            // a pass over 320 MiB through the agent).
            Fs::Xfs => run_ok(Command::new("mkfs.xfs").args(["-q", "-f", "-K"]).arg(dev)),
        };
    }

    /// The read-only check of an unmounted (log already replayed) file system.
    fn check(self, dev: &str) -> (String, std::process::Output) {
        let (tool, args) = match self {
            Fs::Ext4 => ("e2fsck", ["-fn"].as_slice()),
            Fs::Xfs => ("xfs_repair", ["-n"].as_slice()),
        };
        let what = format!("{tool} {}", args.join(" "));
        (what, run(Command::new(tool).args(args).arg(dev)))
    }
}

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
fn ext4_every_point_after_a_flush_passes_fsck_and_holds_fsynced_files() {
    replay_flush_points(Fs::Ext4);
}

#[test]
fn xfs_every_point_after_a_flush_passes_repair_and_holds_fsynced_files() {
    replay_flush_points(Fs::Xfs);
}

/// The workload with its flushes, then every point after a flush (and a sample between them)
/// replayed and checked on `fs`.
fn replay_flush_points(fs_kind: Fs) {
    if !can_run() || !have_tools(&format!("flushpoints {fs_kind:?}"), fs_kind.tools()) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let views = w.join("views");
    let mtd = Mtd::start_with(w, &["--views", views.to_str().unwrap()]);
    let img = w.join("disk.img");
    fs::File::create(&img)
        .unwrap()
        .set_len(fs_kind.disk_bytes())
        .unwrap();
    let agent = Agent::start(w, "fp", &[("d0", &img)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    fs_kind.mkfs(&dev);
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
    // files fsynced before the last flush point at or before it. (The same for xfs, whose log
    // writes are ordered by flushes just as ext4's journal commits are.)
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
            // Mounting replays the journal (the log) into the throwaway overlay.
            let mut m = Mount::new(Path::new(&loopdev), &check);
            for i in 0..*fsynced {
                let got = fs::read(check.join(format!("f{i}"))).unwrap_or_else(|e| {
                    panic!("point seq {seq}: file f{i} fsynced before it: {e}")
                });
                assert!(got == content(i), "point seq {seq}: f{i} differs");
            }
            m.umount();
        }
        let (what, fsck) = fs_kind.check(&loopdev);
        assert!(
            fsck.status.success(),
            "{what} at seq {seq}: {}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        run_ok(mtd.rewind_cmd().args(["detach", &loopdev]));
        std::mem::forget(guard);
    }
    eprintln!(
        "{fs_kind:?} flush points: {} after flushes ({points:?}), {} in all",
        points.len(),
        all.len()
    );
}
