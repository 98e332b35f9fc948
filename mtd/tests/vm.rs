//! The test VM boots under qemu TCG: from a root image file (twice: the boot count on the disk
//! proves the guest wrote to it), through NBD served by qemu-nbd, and not from a disk without a
//! root filesystem. These are the boots the failover tests rely on.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::vm::{self, Vm};
use common::*;

const BOOT_LIMIT: Duration = Duration::from_secs(60);

/// A marker no earlier run wrote.
fn unique_marker(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Writes `text` to /marker in the ext4 image `img`, through a loop mount under `work`
/// (unmounted, and so its loop device detached, even when this fails).
fn write_marker(img: &Path, work: &Path, text: &str) {
    let at = work.join("mnt");
    fs::create_dir_all(&at).expect("mount point");
    run_ok(Command::new("mount").args(["-o", "loop"]).arg(img).arg(&at));
    let mut m = Mount(Some(at.clone()));
    fs::write(at.join("marker"), text).expect("write /marker");
    m.umount();
}

/// Waits for the healthy boot of a root image whose /marker holds `marker`, checking the lines
/// before it; returns the time from qemu's start to `healthy`.
fn expect_healthy(vm: &Vm, marker: &str, boot_count: u64) -> Duration {
    let line = vm
        .wait_line("rewind-vm: healthy", BOOT_LIMIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let took = vm.uptime();
    assert!(line.ends_with("rewind-vm: healthy"), "{line:?}");
    let console = vm.console();
    // (Firmware escape codes may share the first guest line: compare line ends.)
    let m = vm
        .wait_line("rewind-vm: marker=", Duration::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        m.ends_with(&format!("rewind-vm: marker={marker}")),
        "marker line {m:?}, wanted marker={marker}; console:\n{console}"
    );
    let c = vm
        .wait_line("rewind-vm: boot-count=", Duration::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        c.ends_with(&format!("rewind-vm: boot-count={boot_count}")),
        "boot count line {c:?}, wanted {boot_count}; console:\n{console}"
    );
    took
}

/// A 64 MiB root image in `work` with a fresh marker written through a loop mount.
fn root_with_marker(work: &Path, test: &str) -> (PathBuf, String) {
    let img = work.join("root.img");
    vm::make_root(&img, 64);
    let marker = unique_marker(test);
    write_marker(&img, work, &marker);
    (img, marker)
}

#[test]
fn boots_from_a_file_and_writes_to_it() {
    let test = "boots_from_a_file_and_writes_to_it";
    if !vm::can_boot(test) {
        return;
    }
    vm::images();
    let work = tempdir();
    let (img, marker) = root_with_marker(work.path(), test);
    let drive = img.to_str().unwrap();
    let first = {
        let vm = Vm::boot(drive);
        expect_healthy(&vm, &marker, 1)
    };
    // The first VM was killed (drop) after it synced its boot count.
    let second = {
        let vm = Vm::boot(drive);
        expect_healthy(&vm, &marker, 2)
    };
    eprintln!("boot to healthy from a file: {first:.2?}, then {second:.2?}");
}

/// `qemu-nbd` serving a file on a unix socket; killed by pid (and reaped) on drop.
struct QemuNbd {
    child: Child,
    sock: PathBuf,
}

impl QemuNbd {
    fn serve(img: &Path, sock: &Path) -> QemuNbd {
        let child = Command::new("qemu-nbd")
            .args(["--format=raw", "--persistent", "--cache=none"])
            .arg(format!("--socket={}", sock.display()))
            .arg(img)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn qemu-nbd");
        let mut q = QemuNbd {
            child,
            sock: sock.to_path_buf(),
        };
        wait_for_path(
            &mut q.child,
            &q.sock,
            Duration::from_secs(10),
            "qemu-nbd",
            &String::new,
        );
        q
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        let _ = fs::remove_file(&self.sock);
    }
}

#[test]
fn boots_through_nbd() {
    let test = "boots_through_nbd";
    if !vm::can_boot(test) {
        return;
    }
    vm::images();
    let work = tempdir();
    let (img, marker) = root_with_marker(work.path(), test);
    let sock = work.path().join("nbd.sock");
    let _nbd = QemuNbd::serve(&img, &sock);
    let vm = Vm::boot(&format!("nbd+unix:///?socket={}", sock.display()));
    let took = expect_healthy(&vm, &marker, 1);
    eprintln!("boot to healthy through NBD (qemu-nbd, unix socket): {took:.2?}");
}

#[test]
fn a_disk_without_a_root_filesystem_powers_off() {
    let test = "a_disk_without_a_root_filesystem_powers_off";
    if !vm::can_boot(test) {
        return;
    }
    vm::images();
    let work = tempdir();
    let img = work.path().join("blank.img");
    fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .expect("blank image");
    let mut vm = Vm::boot(img.to_str().unwrap());
    let line = vm
        .wait_line("rewind-vm: cannot mount root", BOOT_LIMIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        vm.wait_exit(Duration::from_secs(30)).is_some(),
        "qemu still running after {line:?}:\n{}",
        vm.console()
    );
    assert!(
        !vm.console().contains("rewind-vm: healthy"),
        "{}",
        vm.console()
    );
}

#[test]
fn boot_command_runs_through_sh() {
    let test = "boot_command_runs_through_sh";
    if !vm::can_boot(test) {
        return;
    }
    let work = tempdir();
    let img = work.path().join("root.img");
    vm::make_root(&img, 64);
    let cmd = vm::boot_command(&format!("{}", img.display()));
    assert!(cmd.starts_with("qemu-system-x86_64 -accel tcg"), "{cmd}");
    // Same command, with the guest powering off after `healthy` so that sh returns.
    let cmd = cmd.replace("quiet'", "quiet rewind.poweroff'");
    assert!(cmd.contains("rewind.poweroff"), "{cmd}");
    // `exec`: the shell becomes qemu, so its pid is qemu's.
    let log = work.path().join("console.log");
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {cmd}")])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("console log"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sh -c boot command");
    let status = wait_or_kill(&mut child, Duration::from_secs(120));
    let console = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).to_string();
    assert!(
        status.is_some_and(|s| s.success()) && console.contains("rewind-vm: healthy"),
        "{cmd} ({status:?}, None: killed after 120 s):\n{console}"
    );
}
