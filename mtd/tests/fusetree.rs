//! The FUSE view tree (`rewind-mtd serve --views DIR`), through the real daemon: listing and
//! metadata, points read byte for byte against dumps and the workload model, ENOENT for bad or
//! expired points, a file frozen at open, loop devices in direct-io mode over point files, a real
//! ext4 filesystem checked and mounted from a tagged point, and read-write overlay files (fsx, and
//! mkfs/e2fsck through a loop device).
//!
//! Root only (FUSE mounts, loop devices): every test skips otherwise. Every loop device and mount a
//! test makes is undone by a guard, even when an assertion fails.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED {test}: needs root (FUSE mounts and loop devices)");
    }
    root
}

fn start(work: &Path, extra: &[&str]) -> (Mtd, PathBuf) {
    let views = work.join("views");
    let mut args = vec!["--views", views.to_str().unwrap()];
    args.extend_from_slice(extra);
    let d = Mtd::start_engine(work, "uring", &args);
    (d, views)
}

fn workload(group: &str, disks: &[&str]) -> Workload {
    Workload {
        group: group.into(),
        disks: disks.iter().map(|s| s.to_string()).collect(),
        seed: 7,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Equal contents, reported by the first differing offset rather than megabytes of bytes.
fn assert_same_bytes(a: &[u8], b: &[u8], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("{what}: first difference at byte {i}");
    }
}

fn assert_same_files(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert_same_bytes(&x, &y, &format!("{} vs {}", a.display(), b.display()));
}

fn dump_ok(d: &Mtd, group: &str, disk: &str, at: &str, out: &Path) {
    assert_ok(
        &dump(&d.data_dir, group, disk, at, out),
        &format!("dump {group}/{disk}@{at}"),
    );
}

fn assert_enoent(p: &Path) {
    match fs::metadata(p) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{}: {e}", p.display()),
        Ok(_) => panic!("{} exists", p.display()),
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A mount, unmounted when dropped (lazily if it is busy).
struct Mounted(PathBuf);

impl Mounted {
    fn new(dev: &Path, dir: &Path, opts: &str) -> Mounted {
        fs::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "ext4", "-o", opts])
                .arg(dev)
                .arg(dir),
        );
        Mounted(dir.to_path_buf())
    }

    fn unmount(self) {
        run_ok(Command::new("umount").arg(&self.0));
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        umount_or_lazy(&self.0);
    }
}

fn e2fsck_clean(dev: &Path) {
    let out = run(Command::new("e2fsck").arg("-fn").arg(dev));
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}\n{}",
        dev.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tree_lists_groups_disks_and_points_and_reads_them_exactly() {
    if !is_root("tree_lists_groups_disks_and_points_and_reads_them_exactly") {
        return;
    }
    let work = tempdir();
    let (d, views) = start(work.path(), &[]);
    assert!(names(&views).is_empty(), "a fresh store shows no groups");

    // A group that appears after the mount shows up without a remount.
    let wl = workload("web01", &["sda:8MiB", "sdb:4MiB"]);
    run_ok(wl.run_cmd(&d.target(), "2MiB").args(["--tag-every", "128"]));
    assert_eq!(names(&views), ["web01"]);
    let g = views.join("web01");
    assert_eq!(names(&g), ["sda", "sdb"]);
    let sda = g.join("sda");
    assert_eq!(names(&sda), ["at", "latest.img", "overlays"]);
    assert_eq!(
        names(&sda.join("at")),
        [
            "tag:t128.img",
            "tag:t256.img",
            "tag:t384.img",
            "tag:t512.img"
        ]
    );
    assert!(names(&sda.join("overlays")).is_empty());

    // Metadata: read-only images of the disk's size, directories 0750 and images 0440 (root and
    // the access group only), times of the points.
    let now = SystemTime::now();
    for dir in [&views, &g, &sda, &sda.join("at"), &sda.join("overlays")] {
        let m = fs::metadata(dir).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o7777, 0o750, "{}", dir.display());
    }
    let latest = fs::metadata(sda.join("latest.img")).unwrap();
    assert!(latest.is_file());
    assert_eq!(latest.len(), 8 << 20);
    assert_eq!(latest.permissions().mode() & 0o7777, 0o440);
    assert_eq!(
        fs::metadata(g.join("sdb/latest.img")).unwrap().len(),
        4 << 20
    );
    let t128 = fs::metadata(sda.join("at/tag:t128.img")).unwrap();
    assert_eq!(t128.len(), 8 << 20);
    let (m_latest, m_t128) = (latest.modified().unwrap(), t128.modified().unwrap());
    assert!(m_t128 <= m_latest, "an older point has an older time");
    let age = now.duration_since(m_latest).unwrap_or_default();
    assert!(
        age < Duration::from_secs(600),
        "latest.img mtime is {age:?} old"
    );
    assert_eq!(latest.uid(), 0);
    let ls = run_ok(Command::new("ls").arg("-lR").arg(&views));
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("-r--r----- 1 root rewind 8388608") && ls.contains("tag:t384.img"),
        "{ls}"
    );
    assert!(ls.contains("drwxr-x---"), "{ls}");

    // Contents: the same bytes as dumps of the same points, and what the model says.
    let dumped = work.path().join("dump.img");
    for (file, disk, at, seq) in [
        ("sda/latest.img", "sda", "latest", 512),
        ("sda/at/seq:300.img", "sda", "seq:300", 300),
        ("sda/at/tag:t256.img", "sda", "tag:t256", 256),
        ("sdb/at/tag:t128.img", "sdb", "tag:t128", 128),
        ("sdb/latest.img", "sdb", "latest", 512),
    ] {
        let path = g.join(file);
        dump_ok(&d, "web01", disk, at, &dumped);
        assert_same_files(&path, &dumped);
        let index = if disk == "sda" { 0 } else { 1 };
        assert_ok(&wl.verify(&path, index, seq), &format!("verify {file}"));
    }
    // A time spec resolves on lookup even though it is not listed.
    assert_same_files(&sda.join("at/-0s.img"), &sda.join("latest.img"));

    // Bad names: ENOENT.
    for bad in [
        "sda/at/bogus.img",
        "sda/at/seq:99999.img",
        "sda/at/tag:nope.img",
        "sda/at/2001-01-01T00:00:00Z.img",
        "sda/at/seq:5",
        "sda/at/latest-app-consistent.img",
        "sda/overlays/nope.img",
        "sda/nope",
        "sdz/latest.img",
    ] {
        assert_enoent(&g.join(bad));
    }
    assert_enoent(&views.join("nogroup"));

    // Points are read-only.
    let err = fs::OpenOptions::new()
        .write(true)
        .open(sda.join("latest.img"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(sda.join("at/tag:t128.img"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    // An open file is frozen at the point it opened; a new open sees the newest one.
    let at512 = work.path().join("at512.img");
    dump_ok(&d, "web01", "sda", "latest", &at512);
    let mut held = fs::File::open(sda.join("latest.img")).unwrap();
    let mut first = vec![0u8; 4096];
    held.read_exact(&mut first).unwrap();
    run_ok(&mut wl.run_cmd(&d.target(), "3MiB"));
    let at768 = work.path().join("at768.img");
    dump_ok(&d, "web01", "sda", "latest", &at768);
    assert_ne!(fs::read(&at512).unwrap(), fs::read(&at768).unwrap());
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut bytes = Vec::new();
    held.read_to_end(&mut bytes).unwrap();
    assert_same_bytes(&bytes, &fs::read(&at512).unwrap(), "latest.img held open");
    drop(held);
    assert_same_files(&sda.join("latest.img"), &at768);
    // Reads past the end are short.
    let mut f = fs::File::open(sda.join("latest.img")).unwrap();
    f.seek(SeekFrom::Start((8 << 20) - 100)).unwrap();
    let mut tail = vec![0u8; 4096];
    assert_eq!(f.read(&mut tail).unwrap(), 100);
    assert_eq!(f.read(&mut tail).unwrap(), 0);
}

#[test]
fn points_older_than_the_horizon_are_enoent() {
    if !is_root("points_older_than_the_horizon_are_enoent") {
        return;
    }
    let work = tempdir();
    let (d, views) = start(
        work.path(),
        &[
            "--retention",
            "3s",
            "--seal-after",
            "1s",
            "--merge-interval",
            "200ms",
            "--segment-size",
            "1MiB",
        ],
    );
    let wl = workload("web01", &["sda:8MiB"]);
    run_ok(wl.run_cmd(&d.target(), "2MiB").args(["--tag-every", "128"]));
    let at = views.join("web01/sda/at");
    assert!(fs::metadata(at.join("tag:t128.img")).is_ok());
    let t0 = Instant::now();
    loop {
        let g = group_json(&inspect(&d.data_dir), "web01").clone();
        if g["horizon_seq"].as_u64().unwrap() > 128 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "merger never moved the horizon: {g}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The kernel may cache a name for a second.
    std::thread::sleep(Duration::from_millis(1100));
    assert_enoent(&at.join("tag:t128.img"));
    assert_enoent(&at.join("seq:100.img"));
    assert!(!names(&at).contains(&"tag:t128.img".to_string()));
    let latest = views.join("web01/sda/latest.img");
    assert_ok(&wl.verify(&latest, 0, 512), "verify latest after merge");
}

#[test]
fn loop_device_in_direct_io_mode_over_a_point() {
    if !is_root("loop_device_in_direct_io_mode_over_a_point") {
        return;
    }
    let work = tempdir();
    let (d, views) = start(work.path(), &[]);
    let wl = Workload {
        record_size: "64KiB",
        ..workload("db", &["vda:64MiB"])
    };
    run_ok(
        wl.run_cmd(&d.target(), "48MiB")
            .args(["--tag-every", "256"]),
    );
    let dumped = work.path().join("t256.img");
    dump_ok(&d, "db", "vda", "tag:t256", &dumped);
    let lo = Loop::attach(&views.join("db/vda/at/tag:t256.img"), &["--read-only"]);
    // Whole device, direct IO, 1 MiB requests: many parallel FUSE reads.
    let copy = work.path().join("copy.img");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", lo.0))
            .arg(format!("of={}", copy.display()))
            .args(["bs=1M", "iflag=direct", "status=none"]),
    );
    assert_same_files(&copy, &dumped);
    run_ok(Command::new("cmp").arg(lo.path()).arg(&dumped));
    assert_ok(
        &wl.verify(&copy, 0, 256),
        "verify what the loop device read",
    );
    // Small reads through the device's page cache too.
    let mut dev = fs::File::open(lo.path()).unwrap();
    let mut buf = vec![0u8; 512];
    dev.seek(SeekFrom::Start(12345 * 512)).unwrap();
    dev.read_exact(&mut buf).unwrap();
    let want = fs::read(&dumped).unwrap();
    assert_eq!(buf, want[12345 * 512..12346 * 512]);
    // The loop device is read-only.
    let w = run(Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=4096",
            "count=1",
            "oflag=direct",
            "status=none",
        ])
        .arg(format!("of={}", lo.0)));
    assert!(
        !w.status.success(),
        "a write to a read-only loop device succeeded"
    );
    drop(lo);
}

/// An ext4 disk replicated twice: tag v1 holds report.txt and hello.txt; at v2 report.txt is gone
/// and notes.txt exists. Made with mkfs.ext4 -d and debugfs, so nothing is mounted to make it.
fn replicate_ext4(d: &Mtd, work: &Path) -> PathBuf {
    let disk = work.join("disk.img");
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("report.txt"), "quarterly numbers: 42\n").unwrap();
    fs::write(src.join("hello.txt"), "hello from the protected host\n").unwrap();
    run_ok(Command::new("truncate").args(["-s", "64M"]).arg(&disk));
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "demo", "-d"])
            .arg(&src)
            .arg(&disk),
    );
    let image = |extra: &[&str]| {
        run_ok(
            Command::new(bin("rewind-loadgen"))
                .args(["image", "--connect", &d.target()])
                .args(["--group", "fs", "--disk", "sda", "--file"])
                .arg(&disk)
                .args(extra),
        )
    };
    image(&["--tag", "v1"]);
    let prev = work.join("prev.img");
    fs::copy(&disk, &prev).unwrap();
    let notes = work.join("notes.txt");
    fs::write(&notes, "report.txt was deleted by mistake\n").unwrap();
    for req in [
        "rm report.txt".to_string(),
        format!("write {} notes.txt", notes.display()),
    ] {
        run_ok(Command::new("debugfs").args(["-w", "-R", &req]).arg(&disk));
    }
    image(&["--since", prev.to_str().unwrap(), "--tag", "v2"]);
    disk
}

#[test]
fn ext4_point_checks_clean_and_mounts_read_only() {
    if !is_root("ext4_point_checks_clean_and_mounts_read_only") {
        return;
    }
    let work = tempdir();
    let (d, views) = start(work.path(), &[]);
    let disk = replicate_ext4(&d, work.path());
    let sda = views.join("fs/sda");
    // `image` tags are app-consistent.
    assert_eq!(
        names(&sda.join("at")),
        ["latest-app-consistent.img", "tag:v1.img", "tag:v2.img"]
    );
    run_ok(Command::new("cmp").arg(sda.join("latest.img")).arg(&disk));
    run_ok(
        Command::new("cmp")
            .arg(sda.join("at/latest-app-consistent.img"))
            .arg(&disk),
    );

    let lo = Loop::attach(&sda.join("at/tag:v1.img"), &["--read-only"]);
    e2fsck_clean(lo.path());
    let mnt = Mounted::new(lo.path(), &work.path().join("v1"), "ro,noload");
    assert_eq!(
        fs::read_to_string(mnt.0.join("report.txt")).unwrap(),
        "quarterly numbers: 42\n"
    );
    assert!(mnt.0.join("hello.txt").exists());
    assert!(!mnt.0.join("notes.txt").exists());

    let lo2 = Loop::attach(&sda.join("at/tag:v2.img"), &["--read-only"]);
    let mnt2 = Mounted::new(lo2.path(), &work.path().join("v2"), "ro,noload");
    assert!(!mnt2.0.join("report.txt").exists());
    assert_eq!(
        fs::read_to_string(mnt2.0.join("notes.txt")).unwrap(),
        "report.txt was deleted by mistake\n"
    );
    mnt2.unmount();
    drop(lo2);
    mnt.unmount();
    drop(lo);
}

#[test]
fn overlay_file_survives_fsx() {
    if !is_root("overlay_file_survives_fsx") {
        return;
    }
    let Some(fsx) = fsx_bin() else {
        // scripts/test.sh installs fsx and sets this: in the suite a missing tool is a failure.
        assert!(
            std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
            "fsx is not installed (`cargo install fsx`)"
        );
        eprintln!("SKIPPED overlay_file_survives_fsx: fsx is not installed (`cargo install fsx`)");
        return;
    };
    let work = tempdir();
    let (d, views) = start(work.path(), &[]);
    let wl = workload("web01", &["sda:8MiB"]);
    run_ok(wl.run_cmd(&d.target(), "2MiB").args(["--tag-every", "128"]));
    let ovdir = views.join("web01/sda/overlays");
    let file = ovdir.join("t1.img");
    // Overlays come and go without a remount, and with no stale name cached.
    assert_enoent(&file);
    run_ok(
        d.rewind_cmd()
            .args(["overlay", "create", "t1", "web01/sda@tag:t256"]),
    );
    assert_eq!(names(&ovdir), ["t1.img"]);
    let m = fs::metadata(&file).unwrap();
    assert_eq!(m.len(), 8 << 20);
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    assert_same_files(&file, &views.join("web01/sda/at/tag:t256.img"));
    // Its size is fixed: a truncate to another size is refused, to the same size allowed.
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    assert_eq!(
        f.set_len(1 << 20).unwrap_err().raw_os_error(),
        Some(libc::EPERM)
    );
    f.set_len(8 << 20).unwrap();
    drop(f);

    // fsx in block mode: random unaligned reads, writes, hole punches, fsyncs, each read checked
    // against its model. (Shared mmap is not supported on direct-IO files: left out.)
    let conf = work.path().join("fsx.toml");
    fs::write(
        &conf,
        "blockmode = true\nnosizechecks = true\n\
         [opsize]\nmax = 262144\nmin = 1\nalign = 1\n\
         [weights]\nclose_open = 0\nread = 10\nwrite = 10\nmapread = 0\nmapwrite = 0\n\
         invalidate = 0\ntruncate = 0\nfsync = 1\nfdatasync = 1\nposix_fallocate = 0\n\
         punch_hole = 2\nsendfile = 1\nposix_fadvise = 1\ncopy_file_range = 0\n",
    )
    .unwrap();
    let artifacts = work.path().join("fsx");
    fs::create_dir_all(&artifacts).unwrap();
    let out = run(Command::new(fsx)
        .arg("-f")
        .arg(&conf)
        .args(["-N", "10000", "-S", "42"])
        .arg("-P")
        .arg(&artifacts)
        .arg(&file));
    assert!(
        out.status.success(),
        "fsx failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The point under the overlay never changed.
    assert_ok(
        &wl.verify(&views.join("web01/sda/at/tag:t256.img"), 0, 256),
        "point under the overlay",
    );

    run_ok(d.rewind_cmd().args(["overlay", "delete", "t1"]));
    assert_enoent(&file);
    assert!(names(&ovdir).is_empty());
}

#[test]
fn overlay_file_carries_a_filesystem_through_a_loop_device() {
    if !is_root("overlay_file_carries_a_filesystem_through_a_loop_device") {
        return;
    }
    let work = tempdir();
    let (d, views) = start(work.path(), &[]);
    let wl = Workload {
        record_size: "64KiB",
        ..workload("web01", &["sda:64MiB"])
    };
    run_ok(
        wl.run_cmd(&d.target(), "16MiB")
            .args(["--tag-every", "128"]),
    );
    run_ok(
        d.rewind_cmd()
            .args(["overlay", "create", "scratch", "web01/sda@tag:t128"]),
    );
    let file = views.join("web01/sda/overlays/scratch.img");
    {
        let lo = Loop::attach(&file, &[]);
        run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(lo.path()));
        let mnt = Mounted::new(lo.path(), &work.path().join("mnt"), "rw");
        let data: Vec<u8> = (0..3 << 20)
            .map(|i: u32| (i * 7 + i / 4096) as u8)
            .collect();
        fs::write(mnt.0.join("big.bin"), &data).unwrap();
        fs::create_dir(mnt.0.join("dir")).unwrap();
        for i in 0..50 {
            fs::write(mnt.0.join(format!("dir/f{i}")), format!("file {i}\n")).unwrap();
        }
        mnt.unmount();
        e2fsck_clean(lo.path());
        let mnt = Mounted::new(lo.path(), &work.path().join("mnt"), "ro");
        assert_eq!(fs::read(mnt.0.join("big.bin")).unwrap(), data);
        assert_eq!(
            fs::read_to_string(mnt.0.join("dir/f49")).unwrap(),
            "file 49\n"
        );
        mnt.unmount();
        drop(lo);
    }
    // The filesystem stays in the overlay (a new loop device over it sees it); the point under
    // it is unchanged.
    let lo = Loop::attach(&file, &["--read-only"]);
    e2fsck_clean(lo.path());
    drop(lo);
    assert_ok(
        &wl.verify(&views.join("web01/sda/at/tag:t128.img"), 0, 128),
        "point under the overlay",
    );
    let used = stdout(&run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])));
    assert!(used.contains("\"scratch\""), "{used}");
}

fn mounted(dir: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*dir.to_string_lossy()))
}

#[test]
fn dead_tree_is_replaced_and_a_busy_tree_detached_at_stop() {
    if !is_root("dead_tree_is_replaced_and_a_busy_tree_detached_at_stop") {
        return;
    }
    let work = tempdir();
    let (mut d, views) = start(work.path(), &[]);
    let wl = workload("web01", &["sda:8MiB"]);
    run_ok(&mut wl.run_cmd(&d.target(), "1MiB"));
    assert!(mounted(&views));

    // kill -9 leaves a dead mount (ENOTCONN); the next start detaches it and mounts afresh.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = d.child.take().map(|mut c| c.wait());
    let err = fs::metadata(&views).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    d.restart();
    assert!(
        d.log_text().contains("a dead FUSE mount"),
        "{}",
        d.log_tail(20)
    );
    assert_ok(
        &wl.verify(&views.join("web01/sda/latest.img"), 0, 256),
        "latest after a restart over a dead tree",
    );

    // A stop while a loop device still uses the tree: detached lazily, and the daemon exits.
    let lo = Loop::attach(&views.join("web01/sda/latest.img"), &["--read-only"]);
    let t0 = Instant::now();
    d.terminate();
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(!mounted(&views), "the view tree is still mounted");
    assert!(
        d.log_text().contains("detaching it lazily"),
        "{}",
        d.log_tail(20)
    );
    drop(lo);
    // And the next start mounts it again.
    d.restart();
    assert!(mounted(&views));
    assert_eq!(names(&views), ["web01"]);

    // A kill right after the tree was used, and a restart at once: for a second the kernel
    // still answers stat of the dead root from its attribute cache, yet the restart must see
    // the tree as dead, not refuse to start ("already a mount point").
    for _ in 0..2 {
        fs::metadata(&views).unwrap();
    }
    d.kill9();
    eprintln!(
        "stat of the dead tree right after the kill: {:?}",
        fs::metadata(&views).map(|m| m.is_dir())
    );
    d.restart();
    assert!(mounted(&views));
    assert_eq!(names(&views), ["web01"]);
}

/// A bind mount of a directory onto itself, undone on drop: what systemd's sandbox makes of a
/// unit's `ReadWritePaths=` and `RuntimeDirectory=`.
struct SelfBind(PathBuf);

impl Drop for SelfBind {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The view tree mounts on a directory that is itself a bind mount (as under the packaged
/// systemd unit, where it once refused to start: "already a mount point"), and a second daemon
/// on a live tree is still refused, naming the FUSE mount in its way.
#[test]
fn a_bind_mounted_views_dir_is_taken_and_a_live_tree_refused() {
    if !is_root("a_bind_mounted_views_dir_is_taken_and_a_live_tree_refused") {
        return;
    }
    let work = tempdir();
    let views = work.path().join("views");
    fs::create_dir_all(&views).unwrap();
    let views = views.canonicalize().unwrap();
    nix::mount::mount(
        Some(&views),
        &views,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let _bind = SelfBind(views.clone());
    let d = Mtd::start_engine(work.path(), "uring", &["--views", views.to_str().unwrap()]);
    let wl = workload("web01", &["sda:8MiB"]);
    run_ok(&mut wl.run_cmd(&d.target(), "1MiB"));
    assert_eq!(names(&views), ["web01"]);

    let other = work.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let out = run(Command::new(bin("rewind-mtd"))
        .arg("serve")
        .arg("--data-dir")
        .arg(other.join("data"))
        .arg("--unix")
        .arg(other.join("mtd.sock"))
        .arg("--nbd-unix")
        .arg(other.join("nbd.sock"))
        .arg("--control")
        .arg(other.join("control.sock"))
        .args(["--nbd-listen", "none", "--views"])
        .arg(&views));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second daemon served the same tree"
    );
    assert!(err.contains("live FUSE file system"), "{err}");
    // The first one's tree is untouched.
    assert_eq!(names(&views), ["web01"]);
}

/// Points read through the tree (and through a loop device over one) stay exact while the load
/// generator keeps streaming into the same group.
#[test]
fn points_read_exactly_while_replication_streams() {
    if !is_root("points_read_exactly_while_replication_streams") {
        return;
    }
    let work = tempdir();
    let (d, views) = start(work.path(), &[]);
    let wl = workload("live", &["sda:8MiB"]);
    run_ok(wl.run_cmd(&d.target(), "2MiB").args(["--tag-every", "128"]));
    let state = work.path().join("lg.state");
    let mut lg = Proc::spawn(
        wl.run_cmd(&d.target(), "1TiB")
            .args(["--tag-every", "128", "--max-inflight", "8MiB", "--state"])
            .arg(&state),
    );
    let sda = views.join("live/sda");
    let t256 = sda.join("at/tag:t256.img");
    let dev = run_ok(
        Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--direct-io=on"])
            .arg(&t256),
    );
    let dev = String::from_utf8_lossy(&dev.stdout).trim().to_string();
    let _detach = Loop(dev.clone());
    let copy = work.path().join("copy.img");
    let t0 = Instant::now();
    while acked(&state) <= 512 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the stream did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = acked(&state);
    for round in 0..5 {
        assert_ok(
            &wl.verify(&t256, 0, 256),
            &format!("round {round}: tag:t256.img"),
        );
        assert_ok(
            &wl.verify(&sda.join("at/seq:300.img"), 0, 300),
            &format!("round {round}: seq:300.img"),
        );
        run_ok(
            Command::new("dd")
                .arg(format!("if={dev}"))
                .arg(format!("of={}", copy.display()))
                .args(["bs=1M", "iflag=direct", "status=none"]),
        );
        assert_ok(
            &wl.verify(&copy, 0, 256),
            &format!("round {round}: loop device"),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = acked(&state);
    drop(lg.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    assert!(
        after > before,
        "replication went on meanwhile: acked {before} -> {after}"
    );
}
