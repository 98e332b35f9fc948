//! `rewind-mtd relay`: the process server. It sits near the protected hosts, speaks the agent
//! protocol to agents (they point `--target` at it, unchanged) and to the master target, and
//! acknowledges a batch to the agent as soon as it is durable in the relay's cache, so the data
//! at risk leaves the host at LAN speed whatever the WAN does.
//!
//! A role of `rewind-mtd` rather than a binary of its own: it is the target's protocol code seen
//! from both sides (framing, HELLO checks, TLS and the site CA, the same certificates), and one
//! package and one binary on the relay host keep versions in step with the target.
//!
//! - `log`: the per-group cache log on disk (wire frames in segment files) and its reader;
//! - `writer`: appends and syncs a group's frames (group commit), then acknowledges;
//! - `space`: the cache's size limit, shared by every group (a full cache pushes back);
//! - `meta`: what is kept per group besides frames (agent, disks, generation, target's seq);
//! - `group`: one group's state, shared by its agent session and its forwarder;
//! - `session`: an agent's session at the relay;
//! - `forward`: a group's session with the master target, sending the cache in seq order;
//! - `upstream`: how the relay connects to the master target;
//! - `durable`: telling the agent what the master target holds (CONTROL target-durable);
//! - `recompress`: batches compressed again at a higher zstd level on their way upstream, and
//!   their repeated 4 KiB blocks sent as references (the dedup window);
//! - `listen`: the agents' listeners; `metrics`: bytes in and out.

pub mod bandwidth;
pub(crate) mod durable;
mod epoch;
pub(crate) mod forward;
pub(crate) mod group;
mod listen;
pub(crate) mod log;
pub(crate) mod meta;
pub(crate) mod metrics;
mod recompress;
pub(crate) mod session;
pub(crate) mod space;
pub mod upstream;
pub(crate) mod writer;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rewind_formats::message::{ErrorCode, HelloGroup};

use group::RelayGroup;
use meta::Meta;
use space::Space;

/// `rewind-mtd relay`.
#[derive(clap::Args, Debug)]
pub struct RelayArgs {
    /// Where batches wait for the master target (one directory per group; mode 0700).
    #[arg(long)]
    pub cache_dir: PathBuf,
    /// The most the cache may hold; past it the relay stops acknowledging (agents spool).
    #[arg(long, value_parser = crate::daemon::args::parse_bytes)]
    pub cache_size: u64,
    /// Where agents connect: tcp:ADDR (mutual TLS with --tls-dir; plain with --insecure on
    /// loopback) or unix:PATH (root only). Repeat for several.
    #[arg(long, required = true)]
    pub listen: Vec<String>,
    /// The master target: tcp:HOST:PORT (mutual TLS with the relay's certificate) or unix:PATH.
    #[arg(long)]
    pub upstream: String,
    /// The relay's TLS directory: server.crt/server.key (what agents see), ca.crt and crl.pem
    /// (which agents it accepts), relay.crt/relay.key (what the master target sees):
    /// `rewind-mtd ca issue --relay NAME --host HOST` makes it.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// FOR TESTS ONLY: plain TCP (no TLS) to agents and to the master target, loopback only.
    #[arg(long)]
    pub insecure: bool,
    /// Compress batches again at this zstd level (1-22) before sending them upstream, keeping
    /// the smaller; 0 sends them as the agent compressed them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=22))]
    pub recompress_level: i32,
    /// Send a 4 KiB block the relay sent for the same group within this much data before as a
    /// reference to it (per group, in memory on the relay and on the master target, which
    /// grants at most its `--max-dedup-window`). 0 turns it off, which a master target older
    /// than wire version 3 needs. With it on, batches are compressed again (at
    /// `--recompress-level`, or zstd's default 3 when that is 0).
    #[arg(long, default_value = "32MiB", value_parser = crate::daemon::args::parse_dedup_window)]
    pub dedup_window: u32,
    /// What the relay may send the master target per second, as a weekly schedule in UTC with
    /// the policies' syntax: "*=50MiB/s", or "mon-fri 08:00-18:00=10MiB/s, *=unlimited" (the
    /// first rule that holds the time applies; 0 holds). Default unlimited. Groups share it in
    /// turn; a group behind its RPO target goes first.
    #[arg(long, default_value = "", value_parser = bandwidth::parse_schedule_arg)]
    pub bandwidth: rewind_formats::policy::BandwidthSchedule,
    /// Serve Prometheus metrics (bytes in and out, cache use) on this address.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Write the bound addresses here once listening (agents' first, then `metrics ADDR`).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// The relay: its groups, its cache's room, its upstream.
pub(crate) struct Relay {
    cache_dir: PathBuf,
    groups: Mutex<HashMap<String, Arc<RelayGroup>>>,
    pub(crate) space: Arc<Space>,
    upstream: upstream::Shared,
    pub(crate) metrics: Arc<metrics::Counters>,
    sessions: AtomicU64,
    segment_bytes: u64,
    optimise: recompress::Optimise,
    limiter: Arc<bandwidth::Limiter>,
}

/// Make `dir` (and parents) private to the relay's user.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

impl Relay {
    pub(crate) fn next_session(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// The relay's group for a HELLO group, made on first contact. Refused (code, why): another
    /// agent's group, or a change of disks or generation while the cache still holds batches of
    /// the old ones (they must reach the target first).
    pub(crate) fn group_for(
        self: &Arc<Self>,
        agent: &str,
        hg: &HelloGroup,
    ) -> Result<Arc<RelayGroup>, (ErrorCode, String)> {
        if hg.group.starts_with('.') {
            return Err((
                ErrorCode::Protocol,
                format!("group name {:?} may not start with a dot", hg.group),
            ));
        }
        let disks: Vec<(String, u64)> = hg
            .disks
            .iter()
            .map(|d| (d.disk.clone(), d.size_bytes))
            .collect();
        let mut groups = self.groups.lock().expect("groups lock");
        if let Some(g) = groups.get(&hg.group).cloned() {
            if epoch::newer(&g, hg.epoch, agent).map_err(|m| (ErrorCode::StaleEpoch, m))? {
                // The cache was filled under an epoch the agent has left: drop it, start anew.
                epoch::drop_cache(&g, &self.cache_dir, hg.epoch)
                    .map_err(|e| (ErrorCode::StoreFailed, format!("the relay's cache: {e:#}")))?;
                groups.remove(&hg.group);
                return self.new_group(&mut groups, agent, hg, disks);
            }
            let mut m = g.meta.lock().expect("meta lock");
            if m.agent != agent {
                return Err((
                    ErrorCode::Forbidden,
                    format!(
                        "group {} is fed by another agent through this relay",
                        hg.group
                    ),
                ));
            }
            if m.disks != disks || m.generation != hg.generation {
                if !g.cache_empty() {
                    return Err((
                        ErrorCode::Busy,
                        format!(
                            "group {}: the relay still holds batches of generation {} for the \
                             disks it knew; they must reach the master target before the group \
                             changes (generation {}, {} disks)",
                            hg.group,
                            m.generation,
                            hg.generation,
                            disks.len()
                        ),
                    ));
                }
                m.disks = disks;
                m.generation = hg.generation;
                m.store(&g.dir)
                    .map_err(|e| (ErrorCode::StoreFailed, format!("the relay's cache: {e:#}")))?;
                drop(m);
                g.upstream.send_replace(group::Upstream::Unknown);
                g.redo_hello.notify_one();
            }
            return Ok(g.clone());
        }
        self.new_group(&mut groups, agent, hg, disks)
    }

    /// Makes the relay's group for a HELLO group the relay does not hold (a cache directory and
    /// a forwarder), and lists it.
    fn new_group(
        self: &Arc<Self>,
        groups: &mut HashMap<String, Arc<RelayGroup>>,
        agent: &str,
        hg: &HelloGroup,
        disks: Vec<(String, u64)>,
    ) -> Result<Arc<RelayGroup>, (ErrorCode, String)> {
        let m = Meta {
            agent: agent.to_string(),
            generation: hg.generation,
            disks,
            target_durable: 0,
            epoch: hg.epoch,
        };
        let g = RelayGroup::open(
            self.cache_dir.join(&hg.group),
            &hg.group,
            Some(m),
            self.space.clone(),
            self.segment_bytes,
        )
        .map_err(|e| (ErrorCode::StoreFailed, format!("the relay's cache: {e:#}")))?;
        forward::spawn(
            g.clone(),
            self.upstream.clone(),
            self.metrics.clone(),
            self.optimise,
            self.limiter.clone(),
        );
        groups.insert(hg.group.clone(), g.clone());
        Ok(g)
    }
}

/// Run the relay until killed.
pub fn run(args: RelayArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(serve(args));
    // A cache write blocked on a slow disk must not hold the exit: everything acknowledged is
    // synced already, and what is not was never acknowledged.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    r
}

/// A cache segment: 1/16 of the cache (so that freeing keeps up with a small cache), between 1
/// and 64 MiB.
fn segment_bytes(cache_size: u64) -> u64 {
    (cache_size / 16).clamp(1 << 20, log::SEGMENT_BYTES)
}

async fn serve(args: RelayArgs) -> Result<()> {
    if args.cache_size == 0 {
        anyhow::bail!("--cache-size 0: give the most the cache may hold (e.g. 200GiB)");
    }
    let up_addr =
        upstream::parse_addr(&args.upstream).map_err(|e| anyhow::anyhow!("--upstream {e}"))?;
    let upstream = Arc::new(upstream::Upstream::new(
        up_addr,
        args.tls_dir.as_deref(),
        args.insecure,
    )?);
    private_dir(&args.cache_dir)?;
    let space = Arc::new(Space::new(args.cache_size, 0));
    let metrics = Arc::new(metrics::Counters::default());
    if !args.bandwidth.is_unlimited() {
        tracing::info!(schedule = %args.bandwidth, "upstream bandwidth limited");
    }
    let limiter = Arc::new(bandwidth::Limiter::new(args.bandwidth.clone()));
    let optimise = recompress::Optimise {
        level: args.recompress_level,
        dedup_window: args.dedup_window,
    };
    let relay = Arc::new(Relay {
        cache_dir: args.cache_dir.clone(),
        groups: Mutex::new(HashMap::new()),
        space: space.clone(),
        upstream: upstream.clone(),
        metrics: metrics.clone(),
        sessions: AtomicU64::new(1),
        segment_bytes: segment_bytes(args.cache_size),
        optimise,
        limiter: limiter.clone(),
    });
    // What an earlier run left: every group's cache is read back and forwarded.
    let mut used = 0;
    for e in fs::read_dir(&args.cache_dir)
        .with_context(|| format!("reading {}", args.cache_dir.display()))?
    {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".dropped-") && e.file_type()?.is_dir() {
            // A cache dropped for a newer epoch whose removal a crash cut short.
            fs::remove_dir_all(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            continue;
        }
        if !e.file_type()?.is_dir() || !e.path().join(meta::META).exists() {
            continue;
        }
        let g = RelayGroup::open(e.path(), &name, None, space.clone(), relay.segment_bytes)
            .with_context(|| format!("reopening the cache of group {name}"))?;
        used += g.cached_bytes();
        tracing::info!(group = %name, cached_bytes = g.cached_bytes(), holds = g.holds().0, "reopened a group's cache");
        forward::spawn(
            g.clone(),
            upstream.clone(),
            metrics.clone(),
            optimise,
            limiter.clone(),
        );
        relay.groups.lock().expect("groups lock").insert(name, g);
    }
    space.account(used);
    let mut ready = listen::start(&relay, &args).await?;
    if let Some(addr) = args.metrics_listen {
        ready.push(format!(
            "metrics {}",
            listen::metrics(relay.clone(), addr).await?
        ));
    }
    if let Some(p) = &args.ready_file {
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, ready.join("\n") + "\n")?;
        fs::rename(&tmp, p)?;
    }
    tracing::info!(upstream = %upstream.label, cache = %args.cache_dir.display(), limit = args.cache_size, "relay ready");
    // Everything acknowledged is synced already: a signal just ends the process.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("relay stopping");
    Ok(())
}
