//! `rewind-agent run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use rewind_agent::agent::Agent;
use rewind_agent::config::file::{RunConfig, RunOptions};
use rewind_agent::config::{DiskSpec, FuseTransport, IoEngine};

use super::progress;

#[derive(Args)]
pub struct RunArgs {
    /// TOML settings file (see agent/agent.example.toml); flags given here override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// The protection group
    #[arg(long)]
    group: Option<String>,
    /// A disk of the group: NAME=PATH (a block device or an image file); repeat for more
    #[arg(long = "disk", value_name = "NAME=PATH")]
    disks: Vec<String>,
    /// The master target, or a relay in front of it: unix:PATH or tcp:HOST:PORT (TCP needs TLS,
    /// or --insecure on loopback). Repeat for several: tried in order, the agent moves to the
    /// next after 3 failed attempts in a row and wraps around
    #[arg(long)]
    target: Vec<String>,
    /// TLS files in the layout `rewind-mtd ca` writes: DIR/ca.crt, DIR/agents/AGENT.crt and
    /// DIR/agents/AGENT.key (AGENT: the agent name); --tls-ca/--tls-cert/--tls-key override one
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// The site CA certificate (the only root the target's certificate may chain to)
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This agent's certificate (its common name must be the agent name)
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// This agent's private key
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// FOR TESTS ONLY: plain TCP without TLS, allowed only to a loopback target; nothing proves
    /// the agent's identity, so any local user could claim its name
    #[arg(long)]
    insecure: bool,
    /// State directory (status file, control socket, sync marker); must exist
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// zstd compression level (1..=22; -7..=-1 are zstd's faster, lighter levels) [default: 1]
    #[arg(long, allow_negative_numbers = true)]
    level: Option<i32>,
    /// Compress every batch at --level; by default the level is used only while the link is
    /// the bottleneck, and batches go at zstd's fastest setting while it has room (saving the
    /// workload's CPU)
    #[arg(long)]
    fixed_level: bool,
    /// The group's generation to announce to the target: 1 for a first protection; after a
    /// failover, reverse replication from the promoted replica runs with the group's bumped
    /// generation [default: 1]
    #[arg(long)]
    generation: Option<u64>,
    /// Where the FUSE capture files are mounted [default: /run/rewind/agent/GROUP]
    #[arg(long)]
    mount_dir: Option<PathBuf>,
    /// LINKS_DIR/GROUP/DISK links to each disk's loop device [default: /dev/rewind]
    #[arg(long)]
    links_dir: Option<PathBuf>,
    /// This agent's name towards the target [default: the host name]
    #[arg(long)]
    agent_name: Option<String>,
    /// Most MiB of captured data kept in memory unacknowledged (then the spool)
    /// [default: 256]
    #[arg(long)]
    max_queue_mib: Option<u64>,
    /// Most MiB of captured data spooled to disk (STATE_DIR/GROUP.spool) once memory is
    /// full; beyond it, bitmap mode (dirty regions, resynced when the target catches up)
    /// [default: 1024]
    #[arg(long, value_name = "MIB")]
    spool_mib: Option<u64>,
    /// Threads serving the FUSE capture files [default: 8 with io_uring; 32 with
    /// `--io-engine sync`, where each does one pwrite at a time, so this is the backing disk's
    /// queue depth]
    #[arg(long)]
    fuse_threads: Option<usize>,
    /// How captured writes reach the backing disks: io_uring, or synchronous pwrites (for
    /// kernels without io_uring) [default: uring]
    #[arg(long, value_enum)]
    io_engine: Option<IoEngine>,
    /// How the kernel talks to the capture files: FUSE over io_uring where offered, else
    /// /dev/fuse (auto); io_uring or fail (uring); /dev/fuse only (dev-fuse) [default: auto]
    #[arg(long, value_enum)]
    fuse_transport: Option<FuseTransport>,
    /// On stop, how long to wait for the target to acknowledge what is queued (seconds)
    /// [default: 30]
    #[arg(long)]
    drain_timeout: Option<u64>,
    /// Most MiB per second sent to the target [default: no limit]
    #[arg(long, value_name = "MIB")]
    bandwidth_mib: Option<u64>,
    /// Insert a tag named auto-YYYYMMDD-HHMMSS (UTC) every SECONDS [default: never]
    #[arg(long, value_name = "SECONDS")]
    tag_every: Option<u64>,
    /// Freeze this mounted filesystem around each scheduled tag (app-consistent tags); repeat
    /// for more (frozen in order, thawed in reverse)
    #[arg(long, value_name = "MOUNTPOINT")]
    tag_freeze: Vec<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics (plain HTTP, read-only) [default: off]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// The RPO the group should meet, for alerts (rewind_rpo_target_seconds) [default: none]
    #[arg(long, value_name = "SECONDS")]
    rpo_target: Option<u64>,
}

impl RunArgs {
    /// The flags as a settings layer (what was not given stays empty).
    fn options(self) -> Result<RunOptions> {
        Ok(RunOptions {
            agent_name: self.agent_name,
            group: self.group,
            target: None,
            targets: (!self.target.is_empty()).then_some(self.target),
            state_dir: self.state_dir,
            level: self.level,
            fixed_level: self.fixed_level.then_some(true),
            generation: self.generation,
            mount_dir: self.mount_dir,
            links_dir: self.links_dir,
            max_queue_mib: self.max_queue_mib,
            spool_mib: self.spool_mib,
            fuse_threads: self.fuse_threads,
            io_engine: self.io_engine,
            fuse_transport: self.fuse_transport,
            drain_timeout: self.drain_timeout,
            bandwidth_mib: self.bandwidth_mib,
            tag_every_secs: self.tag_every,
            metrics_listen: self.metrics_listen,
            rpo_target_secs: self.rpo_target,
            tag_freeze: self.tag_freeze,
            tls_dir: self.tls_dir,
            tls_ca: self.tls_ca,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            insecure: self.insecure.then_some(true),
            disks: self
                .disks
                .iter()
                .map(|d| DiskSpec::parse(d))
                .collect::<Result<Vec<_>, _>>()?,
        })
    }
}

fn host_name() -> rewind_agent::Result<String> {
    let p = "/proc/sys/kernel/hostname";
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| rewind_agent::Error::Config {
            what: "agent name",
            why: format!(
                "reading the host name from {p}: {e}; pass --agent-name or set agent_name"
            ),
        })
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let file = match &a.config {
        Some(path) => RunOptions::load(path)?,
        None => RunOptions::default(),
    };
    let RunConfig {
        settings,
        drain_timeout,
    } = file.overridden_by(a.options()?).into_config(host_name)?;
    // Block the stop signals before any thread starts, so every thread inherits the mask and
    // the main thread alone takes them with sigwait.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking SIGINT/SIGTERM")?;
    let group = settings.group.clone();
    let state_dir = settings.state_dir.clone();
    let agent =
        Agent::start(settings).with_context(|| format!("starting protection of group {group}"))?;
    for (d, dev) in a_disks(&agent) {
        println!("{d} {}", dev.display());
    }
    let bar = progress::spawn(state_dir);
    let sig = signals.wait().context("waiting for a stop signal")?;
    drop(bar);
    tracing::info!(signal = ?sig, "stopping");
    let drained = agent.shutdown(drain_timeout);
    Ok(if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The TLS files from --tls-dir and/or --tls-ca/--tls-cert/--tls-key (each overriding its file
/// of the directory); none of them: no TLS.
fn a_disks(agent: &Agent) -> Vec<(String, PathBuf)> {
    agent
        .disk_names()
        .into_iter()
        .zip(agent.devices())
        .collect()
}
