//! `rewind-agent run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::{SigSet, Signal};
use rewind_agent::agent::Agent;
use rewind_agent::config::{DiskSpec, IoEngine, Settings, TargetAddr, TlsFiles};

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
    /// The master target: unix:PATH or tcp:HOST:PORT (TCP needs TLS, or --insecure on loopback)
    #[arg(long)]
    target: String,
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
    /// Plain TCP without TLS, allowed only to a loopback target (tests, an SSH tunnel)
    #[arg(long)]
    insecure: bool,
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
    let agent_name = match a.agent_name.clone() {
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
    let tls = tls_files(&a, &agent_name)?;
    let mut settings = Settings {
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
        tls,
        insecure: a.insecure,
        tls_client: None,
    };
    // The TLS files are read now: a missing or bad one fails the start, not the first connect.
    settings.load_tls()?;
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

/// The TLS files from --tls-dir and/or --tls-ca/--tls-cert/--tls-key (each overriding its file
/// of the directory); none of them: no TLS.
fn tls_files(a: &RunArgs, agent: &str) -> Result<Option<TlsFiles>> {
    let from_dir = a.tls_dir.as_deref().map(|d| TlsFiles::in_dir(d, agent));
    let (ca, cert, key) = (a.tls_ca.clone(), a.tls_cert.clone(), a.tls_key.clone());
    Ok(match from_dir {
        Some(d) => Some(TlsFiles {
            ca: ca.unwrap_or(d.ca),
            cert: cert.unwrap_or(d.cert),
            key: key.unwrap_or(d.key),
        }),
        None => match (ca, cert, key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => bail!("TLS: give --tls-dir, or all three of --tls-ca, --tls-cert and --tls-key"),
        },
    })
}

fn a_disks(agent: &Agent) -> Vec<(String, PathBuf)> {
    agent
        .disk_names()
        .into_iter()
        .zip(agent.devices())
        .collect()
}
