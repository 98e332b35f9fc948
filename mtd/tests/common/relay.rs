//! `rewind-mtd relay` as a process for the relay tests (`relay.rs`, `relay_failover.rs`): start
//! it on a work directory, kill -9 it, restart it on the same cache, read its log and metrics;
//! and what those tests wait for at the master target.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rewind_benches::harness::*;

/// How long a relay may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(120);

/// `rewind-mtd relay` in `work`: agents on `work/relay.sock`, the cache in `work/relay-cache`,
/// its log in `work/relay.log`; restartable on the same paths.
pub struct Relay {
    child: Option<Child>,
    pub cache: PathBuf,
    pub log: PathBuf,
    ready: PathBuf,
    upstream: String,
    cache_size: String,
    metrics: Option<String>,
    /// `--listen` (default: the unix socket) and more flags (`--tls-dir`).
    listen: String,
    extra: Vec<String>,
    /// Where agents connect, from the ready file.
    addr: String,
}

impl Relay {
    pub fn start(work: &Path, upstream: &str, cache_size: &str) -> Relay {
        Relay::start_flags(work, upstream, cache_size, &[])
    }

    /// Like [`Relay::start`], with more flags.
    pub fn start_flags(work: &Path, upstream: &str, cache_size: &str, extra: &[&str]) -> Relay {
        let sock = work.join("relay.sock");
        Relay::start_with(
            work,
            upstream,
            cache_size,
            &format!("unix:{}", sock.display()),
            extra,
        )
    }

    pub fn start_with(
        work: &Path,
        upstream: &str,
        cache_size: &str,
        listen: &str,
        extra: &[&str],
    ) -> Relay {
        let mut r = Relay {
            child: None,
            cache: work.join("relay-cache"),
            log: work.join("relay.log"),
            ready: work.join("relay.ready"),
            upstream: upstream.to_string(),
            cache_size: cache_size.to_string(),
            metrics: None,
            listen: listen.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            addr: String::new(),
        };
        r.restart();
        r
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "relay still running");
        let _ = fs::remove_file(&self.ready);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(bin("rewind-mtd"))
            .arg("relay")
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--cache-size", &self.cache_size])
            .args(["--listen", &self.listen])
            .args(["--upstream", &self.upstream])
            .args(&self.extra)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--ready-file")
            .arg(&self.ready)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rewind-mtd relay");
        let text = || fs::read_to_string(&self.log).unwrap_or_default();
        wait_for_path(
            &mut child,
            &self.ready,
            START_LIMIT,
            "rewind-mtd relay",
            &text,
        );
        self.child = Some(child);
        let ready = fs::read_to_string(&self.ready).unwrap();
        self.metrics = ready
            .lines()
            .find_map(|l| l.strip_prefix("metrics ").map(str::to_string));
        let first = ready.lines().next().expect("a listener in the ready file");
        self.addr = if first.starts_with("unix:") {
            first.to_string()
        } else {
            format!("tcp:{first}")
        };
    }

    pub fn target(&self) -> String {
        self.addr.clone()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A counter or gauge from its metrics page.
    pub fn metric(&self, name: &str) -> u64 {
        let addr = self.metrics.as_ref().expect("metrics address");
        let body = http::get(addr, "/metrics").1;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    }

    /// Bytes in the cache directory's segment files.
    pub fn cached_bytes(&self) -> u64 {
        let mut n = 0;
        for g in fs::read_dir(&self.cache).into_iter().flatten().flatten() {
            for f in fs::read_dir(g.path()).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|x| x == "seg") {
                    n += f.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        n
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What the master target holds of `group` (its durable seq; 0 before the group exists).
pub fn target_durable(mtd: &Mtd, group: &str) -> u64 {
    let (code, body) = mtd.control_get(&format!("/v1/groups/{group}/points"));
    if code != 200 {
        return 0;
    }
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["durable_seq"]
        .as_u64()
        .unwrap_or(0)
}

pub fn wait_until(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
    log: &dyn Fn() -> String,
) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < limit,
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn image(path: &Path, mib: u64) {
    fs::File::create(path)
        .and_then(|f| f.set_len(mib << 20))
        .unwrap();
}
