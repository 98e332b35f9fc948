//! Test harness: run the real daemon and load generator as processes, and clean up after them
//! (by pid, even when a test fails).
#![allow(dead_code)]

pub mod tls_agent;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A built binary of this workspace (`cargo test --workspace` builds them all into target/).
pub fn bin(name: &str) -> PathBuf {
    if name == "rewind-mtd" {
        return PathBuf::from(env!("CARGO_BIN_EXE_rewind-mtd"));
    }
    if name == "rewind" {
        return PathBuf::from(env!("CARGO_BIN_EXE_rewind"));
    }
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run the suite with `cargo test --workspace` (scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rewind-test-")
        .tempdir_in("/var/tmp")
        .expect("temp dir")
}

/// A `rewind-mtd serve` process on a unix socket that stays the same across restarts.
pub struct Daemon {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub sock: PathBuf,
    /// NBD on this unix socket (and TCP on a free loopback port: see `nbd_tcp`).
    pub nbd_sock: PathBuf,
    /// The control API socket (for the `rewind` CLI: `--control` or REWIND_CONTROL).
    pub control: PathBuf,
    /// The FUSE view tree, when started with `with_views`.
    pub views: Option<PathBuf>,
    pub log: PathBuf,
    pub args: Vec<String>,
    pub starts: usize,
}

impl Daemon {
    pub fn start(work: &Path, engine: &str, extra: &[&str]) -> Daemon {
        let mut args = vec!["--io-engine".to_string(), engine.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            child: None,
            data_dir: work.join("data"),
            sock: work.join("mtd.sock"),
            nbd_sock: work.join("nbd.sock"),
            control: work.join("control.sock"),
            views: extra
                .iter()
                .position(|a| *a == "--views")
                .map(|i| PathBuf::from(extra[i + 1])),
            log: work.join("mtd.log"),
            args,
            starts: 0,
        };
        d.restart();
        d
    }

    /// Start (again) and wait until it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        let ready = self.data_dir.with_extension("ready");
        let _ = fs::remove_file(&ready);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        // Plain TCP is what some tests exercise (nbd.rs); tests that give their own
        // --nbd-listen (TLS) get only theirs.
        let nbd_tcp: &[&str] = if self.args.iter().any(|a| a == "--nbd-listen") {
            &[]
        } else {
            &["--nbd-listen", "127.0.0.1:0", "--nbd-insecure"]
        };
        let child = Command::new(bin("rewind-mtd"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--unix")
            .arg(&self.sock)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--nbd-unix")
            .arg(&self.nbd_sock)
            .args(nbd_tcp)
            .arg("--control")
            .arg(&self.control)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rewind-mtd");
        self.child = Some(child);
        self.starts += 1;
        let t0 = Instant::now();
        while !ready.exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rewind-mtd exited early ({status}); last lines of its log:\n{}",
                    self.log_tail(30)
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "rewind-mtd did not become ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect_arg(&self) -> String {
        format!("unix:{}", self.sock.display())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The lines of the ready file (agents' addresses, `nbd ADDR`, `views PATH`, `control PATH`).
    pub fn ready_lines(&self) -> Vec<String> {
        fs::read_to_string(self.data_dir.with_extension("ready"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The NBD TCP address (`127.0.0.1:PORT`).
    pub fn nbd_tcp(&self) -> String {
        self.ready_lines()
            .iter()
            .filter_map(|l| l.strip_prefix("nbd "))
            .find(|a| !a.starts_with("unix:"))
            .expect("daemon reports an NBD TCP address")
            .to_string()
    }

    /// The `rewind` CLI pointed at this daemon.
    pub fn rewind(&self) -> Command {
        let mut c = Command::new(bin("rewind"));
        c.arg("--control").arg(&self.control);
        c
    }

    /// `nbd+unix:///EXPORT?socket=...` for an export name.
    pub fn nbd_uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.nbd_sock.display())
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t0 = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if t0.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log: what a failure report needs, without pages of start-ups.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Daemon {
    /// A clean stop first, so the daemon unmounts and detaches what it made; then make sure.
    fn drop(&mut self) {
        self.stop();
        self.kill9();
        // A killed daemon leaves its FUSE tree mounted but dead. (Not in kill9: a restarted
        // daemon must find the dead tree itself, to clean up what was attached over it.)
        if let Some(v) = &self.views {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(v)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A child process killed (by pid) when the test ends.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(Some(cmd.stdin(Stdio::null()).spawn().expect("spawn")))
    }

    pub fn wait_timeout(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.0.as_mut().unwrap().try_wait().unwrap() {
                self.0 = None;
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "process did not finish within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a command to completion, returning its output (panics with stderr if it cannot start).
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `rewind-mtd inspect --json` as a serde_json value.
pub fn inspect(data_dir: &Path) -> serde_json::Value {
    let out = run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["inspect", "--json", "--data-dir"])
            .arg(data_dir),
    );
    serde_json::from_slice(&out.stdout).expect("inspect json")
}

pub fn group_json<'a>(report: &'a serde_json::Value, group: &str) -> &'a serde_json::Value {
    report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == group)
        .expect("group in report")
}

/// Dump a view to a file; returns the command's output (for error cases too).
pub fn dump(data_dir: &Path, group: &str, disk: &str, at: &str, out: &Path) -> Output {
    run(Command::new(bin("rewind-mtd"))
        .args([
            "dump",
            "--group",
            group,
            "--disk",
            disk,
            "--at",
            at,
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("-o")
        .arg(out))
}

/// Workload flags shared by `rewind-loadgen run` and `verify`.
#[derive(Clone)]
pub struct Workload {
    pub group: String,
    pub disks: Vec<String>,
    pub seed: u64,
    pub pattern: &'static str,
    pub record_size: &'static str,
    pub payload: &'static str,
}

impl Workload {
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![];
        for d in &self.disks {
            a.push("--disk".into());
            a.push(d.clone());
        }
        a.extend([
            "--seed".into(),
            self.seed.to_string(),
            "--pattern".into(),
            self.pattern.into(),
            "--record-size".into(),
            self.record_size.into(),
            "--payload".into(),
            self.payload.into(),
        ]);
        a
    }

    pub fn run_cmd(&self, connect: &str, total: &str) -> Command {
        let mut c = Command::new(bin("rewind-loadgen"));
        c.args([
            "run",
            "--connect",
            connect,
            "--group",
            &self.group,
            "--total",
            total,
        ])
        .args(self.args());
        c
    }

    /// Compare a dumped image of disk `index` against the model at `seq`.
    pub fn verify(&self, image: &Path, index: usize, seq: u64) -> Output {
        run(Command::new(bin("rewind-loadgen"))
            .args(["verify", "--image"])
            .arg(image)
            .args([
                "--disk-index",
                &index.to_string(),
                "--seq",
                &seq.to_string(),
            ])
            .args(self.args()))
    }
}

/// The highest seq the load generator saw acknowledged (its `--state` file; 0 before the first).
pub fn acked(state: &Path) -> u64 {
    rewind_benches::state::read_state(state)
        .expect("load generator state file")
        .unwrap_or(0)
}

pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// fsx (file system exerciser), on PATH or in cargo's bin directory (`cargo install fsx`).
pub fn fsx_bin() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("fsx")).collect())
        .unwrap_or_default();
    candidates.extend(home.map(|h| h.join("bin/fsx")));
    candidates.into_iter().find(|p| p.is_file())
}
