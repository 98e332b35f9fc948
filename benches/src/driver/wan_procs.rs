//! The processes of the WAN bench: the relay (`rewind-mtd relay`) with its metrics, the master
//! target's durable seq read from its control socket, and load generators as agents.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::mtd::{self, Daemon, GRACE};
use super::tools::{self, Bins};
use crate::harness::http;

/// A running relay: its agents' address and its metrics address.
pub struct Relay {
    pub daemon: Daemon,
    pub metrics: String,
}

impl Relay {
    /// Starts a relay caching in `dir` (at most `cache_size`), listening on loopback and sending
    /// to `upstream` (`HOST:PORT`, plain TCP on loopback), with `extra` flags; output to `log`.
    pub fn start(
        bins: &Bins,
        dir: &Path,
        upstream: &str,
        cache_size: u64,
        log: &Path,
        extra: &[&str],
    ) -> Result<Relay> {
        std::fs::create_dir_all(dir)?;
        let ready = mtd::sibling(dir, ".ready");
        let _ = std::fs::remove_file(&ready);
        let out = tools::log_file(log)?;
        let mut child = Command::new(&bins.mtd)
            .arg("relay")
            .arg("--cache-dir")
            .arg(dir)
            .args(["--cache-size", &cache_size.to_string()])
            .args(["--listen", "tcp:127.0.0.1:0", "--insecure"])
            .args(["--upstream", &format!("tcp:{upstream}")])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting rewind-mtd relay")?;
        cleanup::add_proc(child.id(), Stop::Term(GRACE));
        let (addr, metrics) = mtd::wait_ready(&mut child, log, "the relay", || {
            let text = std::fs::read_to_string(&ready).unwrap_or_default();
            let metrics = text.lines().find_map(|l| l.strip_prefix("metrics "))?;
            let first = text.lines().next()?.trim();
            let addr = first.strip_prefix("tcp:").unwrap_or(first);
            Some((addr.to_string(), metrics.trim().to_string()))
        })?;
        Ok(Relay {
            daemon: Daemon { addr, child },
            metrics,
        })
    }

    /// A counter or gauge of the relay's metrics page.
    pub fn metric(&self, name: &str) -> Result<u64> {
        let (code, body) = http::try_get(&self.metrics, "/metrics")
            .map_err(|e| anyhow::anyhow!("GET http://{}/metrics: {e}", self.metrics))?;
        if code != 200 {
            bail!("GET http://{}/metrics: HTTP {code}", self.metrics);
        }
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .with_context(|| format!("no {name} on the relay's metrics page"))
    }
}

/// The master target's durable seq of `group` (0 before the group exists), from its control
/// socket `control` (a unix socket: reachable from any network namespace).
pub fn target_durable(control: &Path, group: &str) -> Result<u64> {
    let what = || format!("GET /v1/groups/{group}/points on {}", control.display());
    let mut s = std::os::unix::net::UnixStream::connect(control).with_context(what)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /v1/groups/{group}/points HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .with_context(what)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).with_context(what)?;
    let status = reply.split_whitespace().nth(1).unwrap_or("");
    if status == "404" {
        return Ok(0);
    }
    if status != "200" {
        bail!("{}: {}", what(), tools::tail(&reply, 3));
    }
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).with_context(|| format!("{}: not JSON", what()))?;
    Ok(v["durable_seq"].as_u64().unwrap_or(0))
}

/// Where a target's control socket is ([`mtd::start_tcp_as`] puts it beside its data).
pub fn control_socket(data_dir: &Path) -> PathBuf {
    mtd::sibling(data_dir, ".control.sock")
}

/// One load generator: what it sends and where.
pub struct Agent<'a> {
    /// `rewind-loadgen` or a command running it (`ip netns exec NS rewind-loadgen`).
    pub program: Command,
    pub connect: &'a str,
    pub group: &'a str,
    pub seed: u64,
    /// `fs`, `random`, ...
    pub payload: &'a str,
    /// Record bytes in all.
    pub total: u64,
    /// Record bytes per second (None: as fast as acknowledged).
    pub rate: Option<u64>,
    /// Extra flags (`--compression store`).
    pub extra: &'a [&'a str],
    /// Its acked seq file.
    pub state: &'a Path,
    pub log: &'a Path,
}

impl Agent<'_> {
    /// Starts it (registered to be killed on exit); its stdout is the JSON summary.
    pub fn spawn(mut self) -> Result<Child> {
        let c = self
            .program
            .args(["run", "--connect", &format!("tcp:{}", self.connect)])
            .args(["--group", self.group, "--disk", "sda:1GiB"])
            .args(["--seed", &self.seed.to_string(), "--pattern", "random"])
            .args(["--record-size", "4KiB", "--payload", self.payload])
            .args(["--total", &self.total.to_string(), "--batch-bytes", "1MiB"])
            .args(["--ack-timeout", "300s", "--json", "--state"])
            .arg(self.state)
            .args(self.extra);
        if let Some(r) = self.rate {
            c.args(["--rate", &r.to_string()]);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(tools::log_file(self.log)?)
            .spawn()
            .context("starting rewind-loadgen")?;
        cleanup::add_proc(child.id(), Stop::Kill);
        Ok(child)
    }
}

/// Waits for a load generator to end; its JSON summary (an error with its log if it failed).
pub fn finish(child: Child, log: &Path) -> Result<Value> {
    let pid = child.id();
    let out = child
        .wait_with_output()
        .context("waiting for rewind-loadgen")?;
    cleanup::forget_proc(pid);
    if !out.status.success() {
        bail!(
            "rewind-loadgen failed ({}): {}",
            out.status,
            tools::tail_file(log, 5)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("rewind-loadgen's summary: {text}"))
}

/// The highest seq a load generator saw acknowledged so far (its state file; 0 before).
pub fn acked(state: &Path) -> u64 {
    crate::state::read_state(state).ok().flatten().unwrap_or(0)
}
