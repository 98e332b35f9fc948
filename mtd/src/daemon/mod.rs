//! `rewind-mtd serve`: the store plus everything that faces the outside — agent listeners, the NBD
//! server, the FUSE view tree and the control API — started in order and stopped in reverse.
//! `args` holds the command line's flags and `serve` turns them into [`DaemonOptions`].

pub mod args;
pub mod serve;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::access::LocalAccess;
use crate::control::{self, Control};
use crate::fusetree::FuseTree;
use crate::nbd::{self, NbdOptions};
use crate::server::{self, AgentListeners};
use crate::store::Store;
use crate::views::exports::Exports;
use crate::views::overlay::Overlays;

pub struct DaemonOptions {
    pub agents: AgentListeners,
    pub nbd: NbdOptions,
    /// Where to mount the FUSE view tree (none: no tree, and no `attach`/`mount`).
    pub views: Option<PathBuf>,
    /// Unix socket of the control API.
    pub control: Option<PathBuf>,
    /// The control API on TCP (address, TLS with site certificates only): `--control-listen`.
    pub control_tcp: Option<(String, Arc<rustls::ServerConfig>)>,
    /// Who may connect to the unix sockets (agents, NBD, control).
    pub access: Arc<LocalAccess>,
    /// Where to serve Prometheus metrics (none: not served).
    pub metrics: Option<std::net::SocketAddr>,
    /// Written once everything listens: one address per line, agents' first, then
    /// `nbd ADDR`, `views PATH`, `control PATH`, `control-tcp ADDR`, `metrics ADDR`.
    pub ready_file: Option<PathBuf>,
}

/// Run until SIGINT or SIGTERM, then stop cleanly: unmount what `rewind mount` mounted, detach
/// loop devices, unmount the view tree.
pub async fn run(store: Arc<Store>, opts: DaemonOptions) -> Result<()> {
    // Overlays pin their points: open them before the merger's first pass.
    let overlays = Arc::new(Overlays::load(store.clone()).context("opening overlays")?);
    let exports = Exports::new(store.clone(), overlays);

    let mut ready = server::start(store.clone(), &opts.agents, &opts.access).await?;
    let nbd_addrs = nbd::start(exports.clone(), &opts.nbd, &opts.access).await?;
    for addr in &nbd_addrs {
        ready.push(format!("nbd {addr}"));
    }
    // Before the tree is mounted: a previous daemon's loop devices and mounts are found by their
    // backing files' paths, which stop naming the views directory once the tree mount (dead
    // after a kill -9) is detached to make way for the new one.
    // Boot commands run as root without NBD certificates: only addresses that need none.
    let boot_nbd: Vec<String> = nbd_addrs
        .iter()
        .filter(|a| a.starts_with("unix:") || opts.nbd.tls.is_none())
        .cloned()
        .collect();
    let control = Control::new(exports.clone(), opts.views.clone(), boot_nbd)?;
    let tree = match &opts.views {
        Some(root) => {
            let exports = exports.clone();
            let root = root.clone();
            let gid = opts.access.gid();
            let tree =
                tokio::task::spawn_blocking(move || FuseTree::mount(exports, &root, gid)).await??;
            ready.push(format!("views {}", tree.root().display()));
            Some(tree)
        }
        None => None,
    };
    // Failovers' loop devices and reverse agents need the tree.
    let c = control.clone();
    tokio::task::spawn_blocking(move || c.failovers.resume()).await?;
    // Scheduled drills make test disks: only once the failovers are back.
    control.start_drill_schedule();
    let ltr_service = store.ltr().map(|l| {
        crate::ltr::service::Service::start(store.clone(), l, control.failovers.jobs.clone())
    });
    if let Some(path) = &opts.control {
        control::start(control.clone(), path, &opts.access).await?;
        ready.push(format!("control {}", path.display()));
    }
    if let Some((addr, tls)) = &opts.control_tcp {
        let bound = control::tcp::start(control.clone(), addr, tls.clone()).await?;
        ready.push(format!("control-tcp {bound}"));
    }
    if let Some(addr) = opts.metrics {
        let bound = crate::metrics::http::start(addr, crate::metrics::registry(&control)).await?;
        ready.push(format!("metrics {bound}"));
    }
    if let Some(rf) = &opts.ready_file {
        let text = ready.join("\n") + "\n";
        crate::store::files::write_atomic(rf, text.as_bytes())
            .with_context(|| format!("writing ready file {}", rf.display()))?;
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        _ = term.recv() => tracing::info!("terminated; stopping"),
    }
    if let Some(mut s) = ltr_service {
        tokio::task::spawn_blocking(move || s.stop()).await?;
    }
    let c = control.clone();
    tokio::task::spawn_blocking(move || c.release_all()).await?;
    if let Some(tree) = tree {
        tokio::task::spawn_blocking(move || drop(tree)).await?;
    }
    // Writes since a client's last flush keep their data (NBD clients still connected, for one).
    let ex = exports.clone();
    tokio::task::spawn_blocking(move || ex.overlays.flush_all()).await?;
    for p in [&opts.agents.unix, &opts.nbd.unix, &opts.control]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
