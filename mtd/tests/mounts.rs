//! `rewind attach` / `rewind mount` over the FUSE view tree, with a real ext4 filesystem: an older
//! tagged point mounted beside the latest shows a file deleted since; e2fsck is clean on it; a
//! writable attachment never changes the point; bad input leaks no mount, loop device or overlay;
//! a daemon killed with things mounted is cleaned up by the next start.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Unmounts a directory when dropped (a failed assertion must not leave a mount behind).
struct MountGuard(std::path::PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Loop devices whose backing file lies under `dir`.
fn loops_under(dir: &Path) -> Vec<String> {
    let out = run(Command::new("losetup").args(["-l", "-n", "-O", "NAME,BACK-FILE"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

fn mounted(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*dir.to_string_lossy()))
}

/// An ext4 disk with report.txt at tag v1, deleted (and notes.txt written) at tag v2.
fn replicate_ext4(d: &Mtd, work: &Path) -> std::path::PathBuf {
    let disk = work.join("disk.img");
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    run_ok(Command::new("truncate").args(["-s", "64M"]).arg(&disk));
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk));
    {
        run_ok(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&disk)
                .arg(&src),
        );
        let _g = MountGuard(src.clone());
        std::fs::write(src.join("report.txt"), "quarterly numbers: 42\n").unwrap();
    }
    let image = |extra: &[&str]| {
        let mut c = Command::new(bin("rewind-loadgen"));
        c.args([
            "image",
            "--connect",
            &d.target(),
            "--group",
            "fs",
            "--disk",
            "sda",
        ])
        .arg("--file")
        .arg(&disk)
        .args(extra);
        run_ok(&mut c);
    };
    image(&["--tag", "v1"]);
    let prev = work.join("prev.img");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&disk)
            .arg(&prev),
    );
    {
        run_ok(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&disk)
                .arg(&src),
        );
        let _g = MountGuard(src.clone());
        std::fs::remove_file(src.join("report.txt")).unwrap();
        std::fs::write(src.join("notes.txt"), "report.txt was deleted\n").unwrap();
    }
    image(&["--since", prev.to_str().unwrap(), "--tag", "v2"]);
    disk
}

#[test]
fn mount_older_point_beside_latest() {
    let work = tempdir();
    let views = work.path().join("views");
    let d = Mtd::start_engine(work.path(), "uring", &["--views", views.to_str().unwrap()]);
    let disk = replicate_ext4(&d, work.path());

    // Read-only attach of v1: a clean filesystem.
    let dev = stdout(&run_ok(d.rewind_cmd().args(["attach", "fs/sda@tag:v1"])));
    assert!(dev.starts_with("/dev/loop"), "{dev}");
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(&dev));
    assert!(fsck.status.success(), "e2fsck -fn on v1: {}", stdout(&fsck));
    let list =
        String::from_utf8_lossy(&run_ok(d.rewind_cmd().arg("attachments")).stdout).into_owned();
    assert!(
        list.contains(&dev) && list.contains("fs/sda@tag:v1") && list.contains("ro"),
        "{list}"
    );
    // A read-only loop device refuses writes.
    let w = run(Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=1", "oflag=direct"])
        .arg(format!("of={dev}")));
    assert!(
        !w.status.success(),
        "write to a read-only attachment succeeded"
    );
    run_ok(d.rewind_cmd().args(["detach", &dev]));
    assert!(loops_under(&views).is_empty());

    // Mount v1 beside latest.
    let (v1, latest) = (work.path().join("v1"), work.path().join("latest"));
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&latest).unwrap();
    let _g1 = MountGuard(v1.clone());
    let _g2 = MountGuard(latest.clone());
    run_ok(d.rewind_cmd().args(["mount", "fs/sda@tag:v1"]).arg(&v1));
    run_ok(d.rewind_cmd().args(["mount", "fs/sda"]).arg(&latest));
    assert_eq!(
        std::fs::read_to_string(v1.join("report.txt")).unwrap(),
        "quarterly numbers: 42\n"
    );
    assert!(!latest.join("report.txt").exists());
    assert!(latest.join("notes.txt").exists());
    assert!(!v1.join("notes.txt").exists());
    // The mount is writable (a throwaway overlay) and the point never changes.
    std::fs::write(v1.join("scratch.txt"), "x").unwrap();
    let overlays =
        String::from_utf8_lossy(&run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])).stdout)
            .into_owned();
    assert!(overlays.contains("\"throwaway\": true"), "{overlays}");
    let again = run(d.rewind_cmd().args(["mount", "fs/sda"]).arg(&latest));
    assert!(
        stderr(&again).contains("already has a rewind mount"),
        "{}",
        stderr(&again)
    );
    run_ok(d.rewind_cmd().arg("umount").arg(&v1));
    run_ok(d.rewind_cmd().arg("umount").arg(&latest));
    assert!(!mounted(&v1) && !mounted(&latest));
    assert!(
        loops_under(&views).is_empty(),
        "loop devices left: {:?}",
        loops_under(&views)
    );
    let overlays =
        String::from_utf8_lossy(&run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])).stdout)
            .into_owned();
    assert_eq!(overlays.trim(), "[]");
    let v1img = work.path().join("v1.img");
    assert_ok(&dump(&d.data_dir, "fs", "sda", "tag:v1", &v1img), "dump v1");
    assert!(run(Command::new("e2fsck").arg("-fn").arg(&v1img))
        .status
        .success());

    // Writable attach: writes go to a throwaway overlay; the latest point still equals the source.
    let dev = stdout(&run_ok(d.rewind_cmd().args([
        "attach",
        "--writable",
        "fs/sda",
    ])));
    run_ok(
        Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "count=4", "oflag=direct"])
            .arg(format!("of={dev}")),
    );
    run_ok(d.rewind_cmd().args(["detach", &dev]));
    let latest_img = work.path().join("latest.img");
    assert_ok(
        &dump(&d.data_dir, "fs", "sda", "latest", &latest_img),
        "dump latest",
    );
    run_ok(Command::new("cmp").arg(&latest_img).arg(&disk));
}

#[test]
fn bad_input_leaks_nothing() {
    let work = tempdir();
    let views = work.path().join("views");
    let d = Mtd::start_engine(work.path(), "sync", &["--views", views.to_str().unwrap()]);
    // Random bytes: not a filesystem.
    let wl = Workload {
        group: "raw".into(),
        disks: vec!["sda:8MiB".into()],
        seed: 5,
        pattern: "seq",
        record_size: "64KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "8MiB"));
    let dir = work.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let _g = MountGuard(dir.clone());
    let cases: &[(&[&str], &str)] = &[
        (&["mount", "raw/sda"], "is there a filesystem on it?"),
        (
            &["mount", "raw/sda", "--partition", "1"],
            "has no partition 1",
        ),
        (&["mount", "nosuch/sda"], "unknown group nosuch"),
        (&["mount", "raw/sda@seq:999999999"], "seq:999999999"),
        (&["attach", "raw/sdq"], "unknown disk sdq"),
    ];
    for (args, want) in cases {
        let mut c = d.rewind_cmd();
        c.args(*args);
        if args[0] == "mount" {
            c.arg(&dir);
        }
        let out = run(&mut c);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(want),
            "{args:?}: want {want:?} in {}",
            stderr(&out)
        );
        assert!(!mounted(&dir), "{args:?} left a mount");
        assert!(
            loops_under(&views).is_empty(),
            "{args:?} left a loop device"
        );
        let o = String::from_utf8_lossy(
            &run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])).stdout,
        )
        .into_owned();
        assert_eq!(o.trim(), "[]", "{args:?} left an overlay");
        let a =
            String::from_utf8_lossy(&run_ok(d.rewind_cmd().args(["--json", "attachments"])).stdout)
                .into_owned();
        assert_eq!(a.trim(), "[]", "{args:?} left an attachment");
    }
    let out = run(d
        .rewind_cmd()
        .args(["mount", "raw/sda"])
        .arg(work.path().join("nodir")));
    assert!(stderr(&out).contains("mount point"), "{}", stderr(&out));
}

#[test]
fn killed_daemon_is_cleaned_up_by_the_next_start() {
    let work = tempdir();
    let views = work.path().join("views");
    let mut d = Mtd::start_engine(work.path(), "uring", &["--views", views.to_str().unwrap()]);
    replicate_ext4(&d, work.path());
    let dir = work.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let _g = MountGuard(dir.clone());
    run_ok(d.rewind_cmd().args(["mount", "fs/sda@tag:v1"]).arg(&dir));
    let dev = stdout(&run_ok(d.rewind_cmd().args(["attach", "fs/sda@tag:v2"])));
    assert!(mounted(&dir));
    // kill -9: the view tree dies under the mount and the loop devices.
    let pid = d.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = d.child.take().map(|mut c| c.wait());
    d.restart();
    assert!(!mounted(&dir), "the dead mount was not cleaned up");
    // Detached: no backing file, or (if a parallel test took the device number since) another one.
    let backing = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        dev.trim_start_matches("/dev/")
    ))
    .unwrap_or_default();
    assert!(
        !backing.trim_end().ends_with("fs/sda/at/tag:v2.img"),
        "{dev} still attached to the old view tree ({backing})"
    );
    let o =
        String::from_utf8_lossy(&run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])).stdout)
            .into_owned();
    assert_eq!(o.trim(), "[]", "throwaway overlay survived");
    assert!(d
        .log_text()
        .contains("cleaning up an attachment left by a previous run"));
    // And it works again.
    run_ok(d.rewind_cmd().args(["mount", "fs/sda@tag:v1"]).arg(&dir));
    assert!(dir.join("report.txt").exists());
    run_ok(d.rewind_cmd().arg("umount").arg(&dir));
}

/// A partitioned disk: `attach -P` lists the partition devices and `mount --partition 1` mounts
/// the filesystem inside.
#[test]
fn partitions() {
    let work = tempdir();
    let views = work.path().join("views");
    let d = Mtd::start_engine(work.path(), "sync", &["--views", views.to_str().unwrap()]);
    let disk = work.path().join("disk.img");
    run_ok(Command::new("truncate").args(["-s", "64M"]).arg(&disk));
    let mut sf = Command::new("sfdisk");
    sf.args(["-q", "-X", "gpt"])
        .arg(&disk)
        .stdin(std::process::Stdio::piped());
    let mut child = sf.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"1MiB,40MiB,L\n,,L\n")
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed");
    // mkfs.ext4 into partition 1 through a partition-scanned loop device of our own.
    let src = stdout(&run_ok(
        Command::new("losetup")
            .args(["--find", "--show", "-P"])
            .arg(&disk),
    ));
    let src_guard = Loop(src.clone());
    // This kernel has no partition-table parsers: add the partitions with BLKPG.
    if !Path::new(&format!("{src}p1")).exists() {
        run_ok(Command::new("partx").arg("-a").arg(&src));
    }
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(format!("{src}p1")),
    );
    let srcdir = work.path().join("src");
    std::fs::create_dir_all(&srcdir).unwrap();
    {
        run_ok(Command::new("mount").arg(format!("{src}p1")).arg(&srcdir));
        let _g = MountGuard(srcdir.clone());
        std::fs::write(srcdir.join("inside.txt"), "partition one\n").unwrap();
    }
    drop(src_guard);
    run_ok(
        Command::new(bin("rewind-loadgen"))
            .args([
                "image",
                "--connect",
                &d.target(),
                "--group",
                "p",
                "--disk",
                "sda",
            ])
            .arg("--file")
            .arg(&disk)
            .args(["--tag", "t"]),
    );

    let out = stdout(&run_ok(d.rewind_cmd().args([
        "attach",
        "-P",
        "p/sda@tag:t",
    ])));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "device and two partitions: {out}");
    assert_eq!(lines[1], format!("{}p1", lines[0]));
    assert_eq!(lines[2], format!("{}p2", lines[0]));
    run_ok(d.rewind_cmd().args(["detach", lines[0]]));

    let dir = work.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let _g = MountGuard(dir.clone());
    let no = run(d
        .rewind_cmd()
        .args(["mount", "p/sda", "--partition", "3"])
        .arg(&dir));
    assert!(
        stderr(&no).contains("has no partition 3"),
        "{}",
        stderr(&no)
    );
    run_ok(
        d.rewind_cmd()
            .args(["mount", "p/sda@tag:t", "--partition", "1"])
            .arg(&dir),
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("inside.txt")).unwrap(),
        "partition one\n"
    );
    run_ok(d.rewind_cmd().arg("umount").arg(&dir));
    assert!(loops_under(&views).is_empty());
}
