//! `rewind-mtd` as the benches run it: a fresh daemon per apply run on TCP, or one long-lived
//! daemon with NBD, the view tree and the control API; the `rewind` CLI against it; cold caches.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::progress;
use super::tools::{self, Bins};

/// How long a daemon or agent gets to stop after SIGTERM before it is killed on exit.
pub const GRACE: Duration = Duration::from_secs(60);

/// A running daemon.
pub struct Daemon {
    pub child: Child,
    /// Its agent address (`HOST:PORT`) for TCP daemons.
    pub addr: String,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, up to 10 s to exit, then SIGKILL (with a note: it should not need it).
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = tools::poll(100, Duration::from_millis(100), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            progress::log(format!(
                "rewind-mtd (pid {}) ignored SIGTERM for 10s; killing it",
                self.pid()
            ));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        cleanup::forget_proc(self.pid());
    }
}

/// The apply bench's daemon: io_uring, TCP on a free port, no NBD, data in `dir` (its ready file
/// and control socket beside it); output to `log`.
pub fn start_tcp(bins: &Bins, dir: &Path, log: &Path) -> Result<Daemon> {
    start_tcp_with(bins, dir, log, &[])
}

/// [`start_tcp`] with more `serve` flags.
pub fn start_tcp_with(bins: &Bins, dir: &Path, log: &Path, extra: &[&str]) -> Result<Daemon> {
    start_tcp_as(Command::new(&bins.mtd), dir, log, extra)
}

/// [`start_tcp_with`] with `rewind-mtd` run by `mtd`, e.g. `ip netns exec NS rewind-mtd` (its
/// loopback is the namespace's then).
pub fn start_tcp_as(mtd: Command, dir: &Path, log: &Path, extra: &[&str]) -> Result<Daemon> {
    start_tcp_serving(mtd, dir, log, "none", extra)
}

/// [`start_tcp`] also serving NBD on the unix socket `DIR.nbd.sock` (returned), for benches that
/// read back what they applied.
pub fn start_tcp_nbd(bins: &Bins, dir: &Path, log: &Path) -> Result<(Daemon, PathBuf)> {
    let sock = sibling(dir, ".nbd.sock");
    let daemon = start_tcp_serving(
        Command::new(&bins.mtd),
        dir,
        log,
        &sock.to_string_lossy(),
        &[],
    )?;
    Ok((daemon, sock))
}

/// [`start_tcp_as`] with NBD on unix socket `nbd_unix` (or `none`).
fn start_tcp_serving(
    mut mtd: Command,
    dir: &Path,
    log: &Path,
    nbd_unix: &str,
    extra: &[&str],
) -> Result<Daemon> {
    std::fs::create_dir_all(dir)?;
    let ready = sibling(dir, ".ready");
    let _ = std::fs::remove_file(&ready);
    let out = tools::log_file(log)?;
    let mut child = mtd
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--io-engine",
            "uring",
        ])
        .args(["--nbd-listen", "none", "--nbd-unix", nbd_unix, "--control"])
        .arg(sibling(dir, ".control.sock"))
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting rewind-mtd")?;
    cleanup::add_proc(child.id(), Stop::Kill);
    let addr = wait_ready(&mut child, log, "rewind-mtd", || tools::first_line(&ready))?;
    Ok(Daemon { child, addr })
}

/// Polls `ready` every 100 ms until it gives the daemon's addresses (at most 30 s); fails with
/// the end of `log` if `child` exits first or the time runs out.
pub fn wait_ready<T>(
    child: &mut Child,
    log: &Path,
    what: &str,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T> {
    for _ in 0..300 {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if !matches!(child.try_wait(), Ok(None)) {
            bail!(
                "{what} exited during start-up: {}",
                tools::tail_file(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{what} did not become ready within 30s: {}",
        tools::tail_file(log, 20)
    )
}

/// `DIR` + suffix as a sibling path (`DIR.ready`).
pub fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Starts a daemon with its agents' socket, control socket and ready file in `work`, the given
/// extra flags and its output appended to `work/mtd.log`; waits up to `ready_secs` for it.
pub fn start_unix(bins: &Bins, work: &Path, extra: &[&str], ready_secs: u32) -> Result<Child> {
    let ready = work.join("ready");
    let _ = std::fs::remove_file(&ready);
    let log = work.join("mtd.log");
    let out = tools::append_file(&log)?;
    let mut child = Command::new(&bins.mtd)
        .arg("serve")
        .arg("--data-dir")
        .arg(work.join("data"))
        .arg("--unix")
        .arg(work.join("agents.sock"))
        .args(extra)
        .arg("--control")
        .arg(work.join("control.sock"))
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting rewind-mtd")?;
    cleanup::add_proc(child.id(), Stop::Term(GRACE));
    if !tools::poll(ready_secs * 10, Duration::from_millis(100), || {
        tools::first_line(&ready).is_some()
    }) {
        let _ = child.kill();
        bail!("rewind-mtd did not start: {}", tools::tail_file(&log, 20));
    }
    Ok(child)
}

/// The views and failover benches' daemon: NBD on `work/nbd.sock`, the view tree on `views`,
/// new groups keeping `retention` of history, quick seals and merges. Stops `previous` first.
pub fn start_views(
    bins: &Bins,
    work: &Path,
    views: &Path,
    retention: &str,
    previous: Option<Child>,
) -> Result<Child> {
    if let Some(prev) = previous {
        cleanup::terminate(prev.id() as i32, GRACE);
        cleanup::forget_proc(prev.id());
    }
    let nbd = work.join("nbd.sock");
    let (nbd, views) = (nbd.to_string_lossy(), views.to_string_lossy());
    let flags = [
        "--nbd-listen",
        "none",
        "--nbd-unix",
        &nbd,
        "--views",
        &views,
        "--retention",
        retention,
        "--seal-after",
        "1s",
        "--merge-interval",
        "200ms",
    ];
    start_unix(bins, work, &flags, 60)
}

/// The `rewind` CLI against the daemon's control socket in `work`.
pub struct Rewind {
    pub bin: PathBuf,
    pub control: PathBuf,
}

impl Rewind {
    pub fn new(bins: &Bins, work: &Path) -> Rewind {
        Rewind {
            bin: bins.rewind.clone(),
            control: work.join("control.sock"),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--control").arg(&self.control).args(args);
        c
    }

    /// Runs `rewind ARGS`; its standard output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        tools::stdout_of(
            &mut self.command(args),
            &format!("rewind {}", args.join(" ")),
        )
    }

    /// Runs `rewind --json ARGS`; its JSON reply.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all)?;
        serde_json::from_str(&out).with_context(|| format!("rewind {}: not JSON", all.join(" ")))
    }

    /// The sum of `field` over the groups named `group` (jq's `add`: `None` when there is no
    /// such group or the field is not a number).
    pub fn group_sum(&self, group: &str, field: &str) -> Result<Option<f64>> {
        let groups = self.json(&["groups"])?;
        let mut sum = None;
        for g in groups["groups"].as_array().into_iter().flatten() {
            if let (true, Some(n)) = (g["name"] == group, g[field].as_f64()) {
                sum = Some(sum.unwrap_or(0.0) + n);
            }
        }
        Ok(sum)
    }
}

/// user + system CPU time of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: field {}", i + 3))
    };
    Ok(tick(11)? + tick(12)?)
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// Empties the page cache, so every read run starts cold, ours and the baseline alike: both read
/// through the page cache, and a file read just before would otherwise be served from memory.
pub fn drop_caches() -> Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("dropping the page cache")
}
