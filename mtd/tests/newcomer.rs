//! What a newcomer tripped over (issue 18), through the real daemon: view and overlay files
//! that tools map into memory (Python's `mmap`, fsx's map operations), and the CLI's messages
//! on a daemon without a view tree and on a group without points.
//!
//! Root only (FUSE mounts): the tests skip otherwise.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn is_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED {test}: needs root (FUSE mounts)");
    }
    root
}

fn workload(group: &str, disks: &[&str]) -> Workload {
    Workload {
        group: group.into(),
        disks: disks.iter().map(|s| s.to_string()).collect(),
        seed: 11,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    }
}

/// A daemon with a view tree holding `web01/sda` (8 MiB) with tags every 128 records, and
/// an overlay `t1` over tag t256.
fn daemon_with_overlay(work: &Path) -> (Mtd, PathBuf) {
    let views = work.join("views");
    let d = Mtd::start_engine(work, "uring", &["--views", views.to_str().unwrap()]);
    let wl = workload("web01", &["sda:8MiB"]);
    run_ok(wl.run_cmd(&d.target(), "2MiB").args(["--tag-every", "128"]));
    run_ok(
        d.rewind_cmd()
            .args(["overlay", "create", "t1", "web01/sda@tag:t256"]),
    );
    (d, views)
}

/// Debian's python (the first `python3` on PATH may be another build): its `mmap` module maps
/// the file shared, as tools do.
fn python(script: &str, args: &[&Path]) -> std::process::Output {
    run(Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args))
}

const MAP_READ: &str = r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
open(sys.argv[2], "wb").write(m[:])
m.close()
os.close(fd)
"#;

/// Writes through a shared read-write map at unaligned offsets, then msync.
const MAP_WRITE: &str = r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[4097:4097 + 10000] = b"\x5a" * 10000
m[size - 3:size] = b"end"
m.flush()
m.close()
os.close(fd)
"#;

fn assert_ok_out(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn view_and_overlay_files_can_be_mapped() {
    if !is_root("view_and_overlay_files_can_be_mapped") {
        return;
    }
    let work = tempdir();
    let (d, views) = daemon_with_overlay(work.path());
    // A point file, mapped read-only, reads what pread reads.
    let point = views.join("web01/sda/at/tag:t256.img");
    let mapped = work.path().join("mapped.img");
    assert_ok_out(
        &python(MAP_READ, &[&point, &mapped]),
        "mmap of a point file",
    );
    assert_eq!(fs::read(&mapped).unwrap(), fs::read(&point).unwrap());

    // An overlay file, written through a shared map: pread through the tree and NBD see it.
    let file = views.join("web01/sda/overlays/t1.img");
    let before = fs::read(&file).unwrap();
    assert_ok_out(
        &python(MAP_WRITE, &[&file]),
        "mmap write of an overlay file",
    );
    let mut want = before.clone();
    want[4097..4097 + 10000].fill(0x5a);
    let n = want.len();
    want[n - 3..].copy_from_slice(b"end");
    let mut got = vec![0u8; n];
    fs::File::open(&file)
        .unwrap()
        .read_exact_at(&mut got, 0)
        .unwrap();
    assert!(got == want, "pread does not see the mapped writes");
    let via_nbd = work.path().join("via-nbd.img");
    assert_ok_out(
        &run(Command::new("nbdcopy")
            .arg(d.nbd_uri("web01/sda@overlay:t1"))
            .arg(&via_nbd)),
        "nbdcopy",
    );
    assert!(
        fs::read(&via_nbd).unwrap() == want,
        "NBD does not see the mapped writes"
    );
    // The point under the overlay did not change.
    assert_eq!(fs::read(&point).unwrap(), fs::read(&mapped).unwrap());
}

#[test]
fn overlay_file_survives_fsx_with_map_operations() {
    if !is_root("overlay_file_survives_fsx_with_map_operations") {
        return;
    }
    let Some(fsx) = fsx_bin() else {
        assert!(
            std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
            "fsx is not installed (`cargo install fsx`)"
        );
        eprintln!("SKIPPED: fsx is not installed (`cargo install fsx`)");
        return;
    };
    let work = tempdir();
    let (_d, views) = daemon_with_overlay(work.path());
    let file = views.join("web01/sda/overlays/t1.img");
    // Block mode (the size never changes) with map reads, map writes and invalidations mixed
    // with plain reads and writes: each read is checked against fsx's model.
    let conf = work.path().join("fsx.toml");
    fs::write(
        &conf,
        "blockmode = true\nnosizechecks = true\n\
         [opsize]\nmax = 262144\nmin = 1\nalign = 1\n\
         [weights]\nclose_open = 0\nread = 10\nwrite = 10\nmapread = 10\nmapwrite = 10\n\
         invalidate = 2\ntruncate = 0\nfsync = 1\nfdatasync = 1\nposix_fallocate = 0\n\
         punch_hole = 2\nsendfile = 1\nposix_fadvise = 1\ncopy_file_range = 0\n",
    )
    .unwrap();
    let artifacts = work.path().join("fsx");
    fs::create_dir_all(&artifacts).unwrap();
    let out = run(Command::new(fsx)
        .arg("-f")
        .arg(&conf)
        .args(["-N", "5000", "-S", "43"])
        .arg("-P")
        .arg(&artifacts)
        .arg(&file));
    assert_ok_out(&out, "fsx with map operations");
}

/// On a daemon without a view tree, a bad point spec is what `rewind attach` and `rewind mount`
/// report: the request is wrong whatever the daemon's setup.
#[test]
fn attach_reports_a_bad_point_spec_before_the_missing_view_tree() {
    if !is_root("attach_reports_a_bad_point_spec_before_the_missing_view_tree") {
        return;
    }
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    for args in [
        vec!["attach", "web/sda@yesterday"],
        vec!["mount", "web/sda@yesterday", work.path().to_str().unwrap()],
    ] {
        let out = run(d.rewind_cmd().args(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("yesterday") && !err.contains("view tree"),
            "{args:?}: {err}"
        );
    }
    // A good spec on the same daemon is told about the view tree.
    let out = run(d.rewind_cmd().args(["attach", "web/sda@latest"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("view tree") && err.contains("--views"),
        "{err}"
    );
}

/// `rewind detach` of a loop device someone still has open: `losetup -d` only marks it for
/// clearing, so the detach did not happen. It is refused after a bounded wait, naming who holds
/// it, and the attachment stays listed; once the holder lets go the kernel clears the device and
/// a second detach drops the record.
#[test]
fn detach_of_a_held_loop_device_says_who_holds_it() {
    if !is_root("detach_of_a_held_loop_device_says_who_holds_it") {
        return;
    }
    let work = tempdir();
    let (d, _views) = daemon_with_overlay(work.path());
    let out = run_ok(d.rewind_cmd().args(["attach", "web01/sda@tag:t256"]));
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    let holder = fs::File::open(&dev).unwrap();
    let out = run(d.rewind_cmd().args(["detach", &dev]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "detach of a held device succeeded");
    let me = format!("open by pid {}", std::process::id());
    assert!(err.contains(&dev) && err.contains(&me), "{err}");
    assert!(
        !d.log_text().contains("detached loop device"),
        "a detach that did not happen was logged:\n{}",
        d.log_tail(20)
    );
    let list = run_ok(d.rewind_cmd().args(["--json", "attachments"]));
    assert!(String::from_utf8_lossy(&list.stdout).contains(&dev));
    drop(holder);
    let t0 = std::time::Instant::now();
    let name = dev.trim_start_matches("/dev/");
    while Path::new(&format!("/sys/block/{name}/loop")).exists() {
        assert!(t0.elapsed().as_secs() < 10, "{dev} not cleared after close");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run_ok(d.rewind_cmd().args(["detach", &dev]));
    let list = run_ok(d.rewind_cmd().args(["--json", "attachments"]));
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&dev));
}
