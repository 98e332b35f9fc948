//! `rewind-agent run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use rewind_agent::agent::Agent;
use rewind_agent::config::{DiskSpec, IoEngine, Settings, TargetAddr};

#[derive(Args)]
pub struct RunArgs {
    /// TOML settings file (not implemented yet: use the flags)
    #[arg(long)]
    config: Option<PathBuf>,
    /// The protection group
    #[arg(long)]
    group: String,
    /// A disk of the group: NAME=PATH (a block device or an image file); repeat for more
    #[arg(long = "disk", value_name = "NAME=PATH", required = true)]
    disks: Vec<String>,
    /// The master target: unix:PATH or tcp:HOST:PORT (loopback only until TLS lands)
    #[arg(long)]
    target: String,
    /// State directory (status file, control socket, sync marker); must exist
    #[arg(long)]
    state_dir: PathBuf,
    /// zstd compression level (1..=22; -7..=-1 are zstd's faster, lighter levels)
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    level: i32,
    /// Where the FUSE capture files are mounted [default: /run/rewind/agent/GROUP]
    #[arg(long)]
    mount_dir: Option<PathBuf>,
    /// LINKS_DIR/GROUP/DISK links to each disk's loop device
    #[arg(long, default_value = "/dev/rewind")]
    links_dir: PathBuf,
    /// This agent's name towards the target [default: the host name]
    #[arg(long)]
    agent_name: Option<String>,
    /// Most MiB of captured data kept in memory unacknowledged; writers wait beyond it
    #[arg(long, default_value_t = 256)]
    max_queue_mib: u64,
    /// Most MiB of captured data spooled to disk (STATE_DIR/GROUP.spool) once memory is
    /// full; beyond it, bitmap mode (dirty regions, resynced when the target catches up)
    #[arg(long, default_value_t = 1024)]
    spool_mib: u64,
    /// Threads serving the FUSE capture files [default: 8 with io_uring; 32 with
    /// `--io-engine sync`, where each does one pwrite at a time, so this is the backing disk's
    /// queue depth]
    #[arg(long)]
    fuse_threads: Option<usize>,
    /// How captured writes reach the backing disks: io_uring, or synchronous pwrites (for
    /// kernels without io_uring)
    #[arg(long, value_enum, default_value_t = IoEngine::Uring)]
    io_engine: IoEngine,
    /// On stop, how long to wait for the target to acknowledge what is queued (seconds)
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    if let Some(c) = &a.config {
        bail!(
            "--config {}: configuration files are not implemented yet; pass the settings as flags",
            c.display()
        );
    }
    let agent_name = match a.agent_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name (or pass --agent-name)")?
            .trim()
            .to_string(),
    };
    let disks = a
        .disks
        .iter()
        .map(|d| DiskSpec::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = Settings {
        agent: agent_name,
        mount_dir: a
            .mount_dir
            .unwrap_or_else(|| PathBuf::from("/run/rewind/agent").join(&a.group)),
        group: a.group,
        disks,
        target: TargetAddr::parse(&a.target)?,
        state_dir: a.state_dir,
        level: a.level,
        links_dir: a.links_dir,
        max_queue_bytes: a.max_queue_mib << 20,
        fuse_threads: a.fuse_threads.unwrap_or(match a.io_engine {
            IoEngine::Uring => 8,
            IoEngine::Sync => 32,
        }),
        io_engine: a.io_engine,
        spool_bytes: a.spool_mib << 20,
    };
    // Block the stop signals before any thread starts, so every thread inherits the mask and
    // the main thread alone takes them with sigwait.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking SIGINT/SIGTERM")?;
    let group = settings.group.clone();
    let agent =
        Agent::start(settings).with_context(|| format!("starting protection of group {group}"))?;
    for (d, dev) in a_disks(&agent) {
        println!("{d} {}", dev.display());
    }
    let sig = signals.wait().context("waiting for a stop signal")?;
    tracing::info!(signal = ?sig, "stopping");
    let drained = agent.shutdown(Duration::from_secs(a.drain_timeout));
    Ok(if drained {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn a_disks(agent: &Agent) -> Vec<(String, PathBuf)> {
    agent
        .disk_names()
        .into_iter()
        .zip(agent.devices())
        .collect()
}
