//! A Debian root booted with systemd as PID 1 (`systemd-nspawn --boot`), for tests of what
//! systemd itself does with the packages' units: enable, start, restart and stop them with
//! their hardening in force. This machine's own PID 1 is not systemd, so nothing else can.
//!
//! The root is built once by scripts/systemd-root.sh (cached in [`DEFAULT_ROOT_DIR`]); each
//! container boots its own copy, in its own network namespace with only loopback, so that its
//! ports cannot collide with other tests' and the cached root stays clean.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::cmd::{assert_ok, run_ok, run_within};
use super::procs::sigterm_and_wait;
use super::scratch::{have_tools, tempdir};

pub const DEFAULT_ROOT_DIR: &str = "/var/cache/rewind-systemd-root";

const TOOLS: [&str; 4] = ["systemd-nspawn", "nsenter", "debootstrap", "flock"];

/// Whether containers can boot here: root and its tools. When not, says so and returns false
/// (skip), unless `REWIND_REQUIRE_TOOLS` is set: then a missing tool fails (as [`have_tools`]).
pub fn can_boot(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED {test}: needs root (systemd-nspawn)");
        return false;
    }
    have_tools(test, &TOOLS)
}

/// The cached root (built by scripts/systemd-root.sh on `REWIND_SYSTEMD_ROOT_DIR`, default
/// [`DEFAULT_ROOT_DIR`], if it is not there yet).
fn cached_root() -> PathBuf {
    let dir = std::env::var_os("REWIND_SYSTEMD_ROOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT_DIR));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/systemd-root.sh");
    let out = run_within(Command::new(&script).arg(&dir), Duration::from_secs(900));
    assert_ok(&out, &format!("{} {}", script.display(), dir.display()));
    let root = dir.join("root");
    assert!(
        dir.join("complete").exists() && root.join("usr/lib/systemd/systemd").exists(),
        "systemd-root.sh left no root in {}",
        dir.display()
    );
    root
}

/// A booted container, powered off (and its copy of the root removed) on drop.
pub struct Container {
    nspawn: Option<Child>,
    /// The container's PID 1 (systemd), as the host sees it.
    leader: i32,
    name: String,
    console: PathBuf,
    _dir: tempfile::TempDir,
}

impl Container {
    /// Boots a copy of the cached root with `binds` (host path, path inside) mounted read-only,
    /// and waits until systemd says the boot is over.
    pub fn boot(binds: &[(&Path, &str)]) -> Container {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let cached = cached_root();
        let dir = tempdir();
        let root = dir.path().join("root");
        run_ok(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&cached)
                .arg(&root),
        );
        let name = format!(
            "rwt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let console = dir.path().join("console.log");
        let log = File::create(&console).expect("console log");
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("--directory")
            .arg(&root)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
            ])
            .args(["--console=pipe", "--machine", &name])
            // The target's view tree is a FUSE mount.
            .arg("--bind=/dev/fuse");
        for (from, to) in binds {
            cmd.arg(format!("--bind-ro={}:{to}", from.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("console log"))
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn");
        let mut c = Container {
            leader: 0,
            nspawn: Some(child),
            name,
            console,
            _dir: dir,
        };
        c.leader = c.find_leader(Duration::from_secs(60));
        // systemd's socket appears a moment after systemd itself; then `--wait` waits for the
        // boot to finish.
        let t0 = Instant::now();
        let state = loop {
            let out = c.sh("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !state.is_empty() || t0.elapsed() > Duration::from_secs(60) {
                break state;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            state == "running",
            "container {} booted into state {state:?}; failed units:\n{}\nconsole:\n{}",
            c.name,
            c.sh_text("systemctl --failed --no-legend --no-pager"),
            c.console()
        );
        c
    }

    /// The pid of the container's systemd: nspawn's child (or grandchild) whose name is systemd.
    fn find_leader(&mut self, limit: Duration) -> i32 {
        let t0 = Instant::now();
        let nspawn = self.nspawn.as_ref().expect("running").id();
        loop {
            let mut todo = vec![nspawn];
            while let Some(pid) = todo.pop() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if pid != nspawn && comm.trim() == "systemd" {
                    return pid as i32;
                }
                todo.extend(children(pid));
            }
            if let Some(Ok(Some(s))) = self.nspawn.as_mut().map(Child::try_wait) {
                panic!("systemd-nspawn exited ({s}):\n{}", self.console());
            }
            assert!(
                t0.elapsed() < limit,
                "no systemd in container {} after {limit:?}:\n{}",
                self.name,
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` with /bin/sh inside the container, as its root, with a clean environment.
    pub fn sh(&self, script: &str) -> Output {
        run_within(
            Command::new("nsenter")
                .arg("--target")
                .arg(self.leader.to_string())
                .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--"])
                .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
                .args(["LANG=C.UTF-8", "SYSTEMD_PAGER=cat", "/bin/sh", "-c", script]),
            Duration::from_secs(300),
        )
    }

    /// [`Container::sh`]'s stdout and stderr, whatever its exit status.
    pub fn sh_text(&self, script: &str) -> String {
        let out = self.sh(script);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs `script` and panics, with its output, the container's failed units and `journal`'s
    /// recent lines, unless it succeeds. Its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in container {}: {script}: {}\nstdout: {}\nstderr: {}\njournal:\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sh_text("journalctl --no-pager -n 60")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits up to `limit` until `unit` is in `state` (`systemctl is-active`'s word: active,
    /// inactive, failed, activating ...); panics with the unit's journal if it never is.
    pub fn wait_unit(&self, unit: &str, state: &str, limit: Duration) {
        let t0 = Instant::now();
        loop {
            let now = self.sh_text(&format!("systemctl is-active {unit}"));
            if now.trim() == state {
                return;
            }
            assert!(
                t0.elapsed() < limit,
                "{unit} is {:?}, not {state}, after {limit:?}:\n{}",
                now.trim(),
                self.unit_log(unit)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `unit`'s status and its journal.
    pub fn unit_log(&self, unit: &str) -> String {
        self.sh_text(&format!(
            "systemctl status --no-pager {unit}; journalctl --no-pager -n 40 -u {unit}"
        ))
    }

    /// What systemd-nspawn and the container's console printed.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }
}

/// The pids `pid`'s threads started.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to power the container off; whatever outlives it goes with its
        // PID 1 (killing a pid namespace's init kills everything in it).
        if let Some(mut c) = self.nspawn.take() {
            sigterm_and_wait(&mut c, Duration::from_secs(60));
        }
        if self.leader > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.leader),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
