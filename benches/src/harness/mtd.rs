//! A `rewind-mtd serve` process with its own sockets under a work directory (so parallel tests
//! never collide), restartable on the same paths.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::bins::bin;
use super::mounts::umount_lazy;
use super::procs::{sigterm_and_wait, wait_for_path};

/// `rewind-mtd serve` in `work`: data in `work/data`, agents on `work/mtd.sock` (or TLS over
/// loopback TCP), NBD on `work/nbd.sock`, the control API on `work/control.sock`, its log in
/// `work/mtd.log`.
pub struct Mtd {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub sock: PathBuf,
    /// NBD on this unix socket (and, from [`Mtd::start_engine`], TCP on a free loopback port:
    /// see [`Mtd::nbd_tcp`]).
    pub nbd_sock: PathBuf,
    /// The control API socket (for the `rewind` CLI: `--control` or REWIND_CONTROL).
    pub control: PathBuf,
    /// The FUSE view tree, when started with `--views`.
    pub views: Option<PathBuf>,
    pub log: PathBuf,
    /// `--tls-dir`: serve agents on 127.0.0.1 (a free port) with TLS instead of the unix socket.
    pub tls_dir: Option<PathBuf>,
    /// The agents' TCP address from the ready file (TLS only).
    pub tcp: Option<String>,
    /// The `serve` flags beyond the paths above.
    pub args: Vec<String>,
    /// How many times it was started.
    pub starts: usize,
}

impl Mtd {
    /// With no NBD TCP listener and the default IO engine.
    pub fn start(work: &Path) -> Mtd {
        Mtd::start_with(work, &[])
    }

    /// Like [`Mtd::start`], with more `serve` flags.
    pub fn start_with(work: &Path, extra: &[&str]) -> Mtd {
        Mtd::launch(work, None, &[&["--nbd-listen", "none"], extra].concat())
    }

    /// Like [`Mtd::start`], but agents connect with mutual TLS to 127.0.0.1 (a free port, read
    /// from the ready file), with the CA directory `tls_dir` (`rewind-mtd ca init`).
    pub fn start_tls(work: &Path, tls_dir: &Path) -> Mtd {
        Mtd::launch(work, Some(tls_dir), &["--nbd-listen", "none"])
    }

    /// Like [`Mtd::start_tls`], with more `serve` flags (`--trusted-relay NAME`).
    pub fn start_tls_with(work: &Path, tls_dir: &Path, extra: &[&str]) -> Mtd {
        Mtd::launch(
            work,
            Some(tls_dir),
            &[&["--nbd-listen", "none"], extra].concat(),
        )
    }

    /// With `--io-engine engine` and `extra`; NBD also on plain TCP (a free loopback port)
    /// unless `extra` gives its own `--nbd-listen`.
    pub fn start_engine(work: &Path, engine: &str, extra: &[&str]) -> Mtd {
        let nbd_tcp: &[&str] = if extra.contains(&"--nbd-listen") {
            &[]
        } else {
            &["--nbd-listen", "127.0.0.1:0", "--nbd-insecure"]
        };
        Mtd::launch(
            work,
            None,
            &[&["--io-engine", engine], nbd_tcp, extra].concat(),
        )
    }

    fn launch(work: &Path, tls_dir: Option<&Path>, args: &[&str]) -> Mtd {
        let mut m = Mtd {
            child: None,
            data_dir: work.join("data"),
            sock: work.join("mtd.sock"),
            nbd_sock: work.join("nbd.sock"),
            control: work.join("control.sock"),
            views: args
                .iter()
                .position(|a| *a == "--views")
                .map(|i| PathBuf::from(args[i + 1])),
            log: work.join("mtd.log"),
            tls_dir: tls_dir.map(Path::to_path_buf),
            tcp: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        m.restart();
        m
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
            .expect("mtd log");
        let mut cmd = Command::new(bin("rewind-mtd"));
        cmd.arg("serve").arg("--data-dir").arg(&self.data_dir);
        match &self.tls_dir {
            None => cmd.arg("--unix").arg(&self.sock),
            Some(d) => cmd
                .arg("--tls-dir")
                .arg(d)
                .args(["--listen", "127.0.0.1:0"]),
        };
        let child = cmd
            .arg("--ready-file")
            .arg(&ready)
            .arg("--nbd-unix")
            .arg(&self.nbd_sock)
            .arg("--control")
            .arg(&self.control)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rewind-mtd");
        self.starts += 1;
        let child = self.child.insert(child);
        let log = || {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            tail(&text, 30)
        };
        wait_for_path(child, &ready, Duration::from_secs(60), "rewind-mtd", &log);
        if self.tls_dir.is_some() {
            // The agents' listeners come first in the ready file: here the one TCP address.
            let first = self.ready_lines().into_iter().next().unwrap_or_default();
            assert!(
                first.starts_with("127.0.0.1:"),
                "ready file {}: {:?}",
                ready.display(),
                self.ready_lines()
            );
            self.tcp = Some(first);
        }
    }

    /// Where agents connect: `unix:SOCK`, or `tcp:ADDR` with TLS.
    pub fn target(&self) -> String {
        match &self.tcp {
            Some(a) => format!("tcp:{a}"),
            None => format!("unix:{}", self.sock.display()),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGTERM and wait (it drains what it received first); fails the test unless it stops
    /// within 30 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            assert!(
                sigterm_and_wait(&mut c, Duration::from_secs(30)).is_some(),
                "rewind-mtd did not stop on SIGTERM"
            );
        }
    }

    /// SIGTERM and wait; SIGKILL after 20 s.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm_and_wait(&mut c, Duration::from_secs(20));
        }
    }

    /// kill -9 (a crash of the target).
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

    /// The agents' plain TCP address (`127.0.0.1:PORT`) of a daemon started with `--listen
    /// 127.0.0.1:0 --insecure`.
    pub fn agent_tcp(&self) -> String {
        self.ready_lines()
            .into_iter()
            .find(|l| l.starts_with("127.0.0.1:"))
            .expect("daemon reports an agent TCP address")
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

    /// The metrics address (`127.0.0.1:PORT`), when started with `--metrics-listen`.
    pub fn metrics_addr(&self) -> String {
        self.ready_lines()
            .iter()
            .find_map(|l| l.strip_prefix("metrics ").map(str::to_string))
            .expect("daemon reports a metrics address (--metrics-listen)")
    }

    /// `nbd+unix:///EXPORT?socket=...` for an export name.
    pub fn nbd_uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.nbd_sock.display())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log: what a failure report needs, without pages of start-ups.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_text(), n)
    }
}

/// The last `n` lines of `text` (a daemon's log, for a failure message).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Mtd {
    /// A clean stop first, so the daemon unmounts and detaches what it made; then make sure.
    fn drop(&mut self) {
        self.terminate();
        // A killed daemon leaves its FUSE tree mounted but dead. (Not in kill9: a restarted
        // daemon must find the dead tree itself, to clean up what was attached over it.)
        if let Some(v) = &self.views {
            umount_lazy(v);
        }
    }
}
