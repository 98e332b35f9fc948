//! The test VM: Debian's 6.1 kernel and a busybox initramfs (scripts/vm-image.sh) booting an
//! ext4 root filesystem (scripts/vm-rootfs.sh) from one virtio disk under qemu TCG, with the
//! serial console captured line by line. The root's init prints `rewind-vm: marker=...`,
//! `rewind-vm: boot-count=N` and `rewind-vm: healthy`; the initramfs prints
//! `rewind-vm: cannot mount root...` and powers off when the disk holds no usable root.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cmd::run_ok;
use super::procs::kill_and_reap;
use super::scratch::have_tool;

/// Where scripts/vm-image.sh keeps its outputs unless `REWIND_VM_DIR` says otherwise.
pub const DEFAULT_IMAGE_DIR: &str = "/var/cache/rewind-vm";

/// Programs the VM tests run (scripts/test.sh installs them).
const TOOLS: [&str; 7] = [
    "qemu-system-x86_64",
    "qemu-nbd",
    "mkfs.ext4",
    "apt-get",
    "dpkg-deb",
    "flock",
    "gzip",
];

/// The kernel and initramfs every test VM boots.
#[derive(Clone, Debug)]
pub struct VmImages {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
}

/// The workspace's scripts/ (beside this crate).
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// What this machine lacks to boot test VMs (root, the tools, a static busybox); empty when
/// nothing is missing.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for t in TOOLS {
        if !have_tool(t) {
            missing.push(t.to_string());
        }
    }
    if !Path::new("/bin/busybox").exists() {
        missing.push("/bin/busybox (busybox-static)".to_string());
    }
    missing
}

/// Whether VM tests can run here. When they cannot, says so loudly and returns false (skip) —
/// unless `REWIND_REQUIRE_TOOLS` is set (scripts/test.sh sets it), where a missing tool fails
/// the test.
pub fn can_boot(test: &str) -> bool {
    let missing = missing();
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "{test} needs {} (scripts/test.sh installs qemu-system-x86, qemu-utils, busybox-static)",
        missing.join(", ")
    );
    assert!(std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(), "{what}");
    eprintln!("SKIPPED {what}");
    false
}

/// Builds (first call in this process) or finds the cached kernel and initramfs:
/// scripts/vm-image.sh on `REWIND_VM_DIR` (default [`DEFAULT_IMAGE_DIR`]). Panics when the
/// tools are missing or the build fails; call [`can_boot`] first to skip instead.
pub fn images() -> VmImages {
    static IMAGES: OnceLock<VmImages> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let missing = missing();
            assert!(
                missing.is_empty(),
                "cannot build the test VM: missing {}",
                missing.join(", ")
            );
            let dir = std::env::var_os("REWIND_VM_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_IMAGE_DIR));
            run_ok(Command::new(scripts().join("vm-image.sh")).arg(&dir));
            let images = VmImages {
                vmlinuz: dir.join("vmlinuz"),
                initrd: dir.join("initrd.cpio.gz"),
            };
            assert!(
                images.vmlinuz.exists() && images.initrd.exists(),
                "vm-image.sh left no images in {}",
                dir.display()
            );
            images
        })
        .clone()
}

/// Makes an ext4 root filesystem image of `size_mib` MiB at `path` (replacing it) with
/// scripts/vm-rootfs.sh.
pub fn make_root(path: &Path, size_mib: u64) {
    run_ok(
        Command::new(scripts().join("vm-rootfs.sh"))
            .arg(path)
            .arg(size_mib.to_string()),
    );
}

/// The qemu command line, one argument per item: the kernel command line gets `extra_append`.
fn qemu_args(images: &VmImages, drive: &str, extra_append: &str) -> Vec<String> {
    let mut append = "console=ttyS0 panic=-1 quiet".to_string();
    if !extra_append.is_empty() {
        append = format!("{append} {extra_append}");
    }
    [
        "-accel",
        "tcg",
        "-M",
        "q35",
        "-m",
        "512",
        "-smp",
        "1",
        "-nographic",
        "-no-reboot",
        "-kernel",
        &images.vmlinuz.to_string_lossy(),
        "-initrd",
        &images.initrd.to_string_lossy(),
        "-append",
        &append,
        "-drive",
        &format!("file={drive},format=raw,if=virtio,cache=none"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Quotes `s` for sh when it holds anything but plain characters (`?` and `&` in NBD URIs,
/// spaces). Placeholders such as `{socket}` are plain: they stay as they are, inside the quotes
/// if the word needs them, for the caller to replace.
fn sh_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%{}".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The same qemu command as [`Vm::boot`], as one shell string (for `sh -c`, e.g. in a recovery
/// plan). `drive` goes after `-drive file=` unchanged, so any placeholders in it are left for the
/// caller to fill in.
pub fn boot_command(drive: &str) -> String {
    let images = images();
    std::iter::once("qemu-system-x86_64".to_string())
        .chain(qemu_args(&images, drive, "").iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Default)]
struct Console {
    /// Everything qemu printed: its stdout (the serial console), and its stderr as lines
    /// starting `[qemu stderr] `.
    lines: Vec<String>,
    /// Both output pipes closed: qemu has exited.
    closed: usize,
}

type Shared = Arc<(Mutex<Console>, Condvar)>;

/// Copies `from` into the console line by line (bytes that are not UTF-8 are replaced), until
/// the pipe closes.
fn pump(from: impl Read, prefix: &'static str, shared: Shared) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).unwrap_or(0);
        let (lock, cv) = &*shared;
        let mut c = lock.lock().unwrap();
        if n == 0 {
            c.closed += 1;
            cv.notify_all();
            return;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        c.lines.push(format!("{prefix}{line}"));
        cv.notify_all();
    }
}

/// A qemu TCG VM booting [`images`] from one virtio disk; killed (by pid) and reaped on drop.
pub struct Vm {
    child: Option<Child>,
    pid: u32,
    shared: Shared,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Vm {
    /// Boots from `drive`: what follows `-drive file=` (a file path, or an NBD URI such as
    /// `nbd+unix:///EXPORT?socket=SOCK`).
    pub fn boot(drive: &str) -> Vm {
        Vm::boot_with_append(drive, "")
    }

    /// Like [`Vm::boot`], with `extra` added to the kernel command line (e.g. `rewind.poweroff`).
    pub fn boot_with_append(drive: &str, extra: &str) -> Vm {
        let images = images();
        let mut child = Command::new("qemu-system-x86_64")
            .args(qemu_args(&images, drive, extra))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu-system-x86_64");
        let started = Instant::now();
        let pid = child.id();
        let shared: Shared = Arc::default();
        let out = child.stdout.take().expect("qemu stdout");
        let err = child.stderr.take().expect("qemu stderr");
        let readers = vec![
            {
                let s = shared.clone();
                std::thread::spawn(move || pump(out, "", s))
            },
            {
                let s = shared.clone();
                std::thread::spawn(move || pump(err, "[qemu stderr] ", s))
            },
        ];
        Vm {
            child: Some(child),
            pid,
            shared,
            readers,
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Time since qemu was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything qemu printed so far, one line each.
    pub fn console(&self) -> String {
        let c = self.shared.0.lock().unwrap();
        c.lines.join("\n")
    }

    /// The first console line (from the start of the boot) that contains `needle`. Fails after
    /// `timeout`, or as soon as qemu exits without having printed it; the error holds the
    /// console so far.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut c = lock.lock().unwrap();
        let mut seen = 0;
        loop {
            if let Some(l) = c.lines[seen..].iter().find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            seen = c.lines.len();
            let why = if c.closed == 2 {
                Some("qemu exited".to_string())
            } else if Instant::now() >= deadline {
                Some(format!("not within {timeout:?}"))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(format!(
                    "no console line with {needle:?} ({why}); qemu pid {}, console:\n{}",
                    self.pid,
                    c.lines.join("\n")
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            c = cv.wait_timeout(c, left).unwrap().0;
        }
    }

    /// Waits up to `timeout` for qemu to exit by itself (e.g. after `rewind.poweroff`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
        // The pipes close with qemu; a reader still blocked after that (a pipe inherited by
        // some other process) is left alone rather than hanging the test.
        let t0 = Instant::now();
        while !self.readers.iter().all(|r| r.is_finished()) && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}
