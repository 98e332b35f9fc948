//! `rewind-mtd serve`: from the arguments to a running daemon. Paths are made absolute, the files
//! they name are loaded and checked, the store is opened, then [`super::run`] runs until a signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::args::ServeArgs;
use super::DaemonOptions;
use crate::access::LocalAccess;
use crate::nbd::clients::Clients;
use crate::nbd::{Limits, NbdOptions};
use crate::server::AgentListeners;
use crate::store::quota::Quotas;
use crate::store::writer::WriterConfig;
use crate::store::{Store, StoreOptions};

/// Run the daemon as `args` say, until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
    let args = args.canonical()?;
    let tls = args
        .tls_dir
        .as_deref()
        .map(crate::tls::server_config)
        .transpose()
        .context("loading the TLS files")?;
    let nbd_tls = args
        .nbd_tls_dir
        .as_deref()
        .map(crate::tls::server_config)
        .transpose()
        .context("loading the NBD TLS files (--nbd-tls-dir)")?;
    // Its own verifier (the agents' may be absent): the same CA and revocation list.
    let control_tls = match (&args.control_listen, &args.tls_dir) {
        (Some(_), Some(dir)) => Some(
            crate::tls::server_config(dir)
                .context("loading the TLS files for --control-listen (--tls-dir)")?,
        ),
        (Some(_), None) => anyhow::bail!("--control-listen needs --tls-dir (mutual TLS)"),
        _ => None,
    };
    let nbd_clients = args
        .nbd_clients
        .as_deref()
        .map(|p| Clients::load(p).map(Arc::new))
        .transpose()?;
    if args.nbd_max_conns == 0 {
        anyhow::bail!("--nbd-max-conns 0 would refuse every NBD client");
    }
    if let Some(mode) = args.ltr_object_lock {
        let store = args.ltr_store.as_deref();
        if !store.is_some_and(|u| u.starts_with("s3://")) {
            anyhow::bail!(
                "--ltr-object-lock {}: only an S3 bucket with Object Lock enabled can lock \
                 objects, and the long-term store is {} (give --ltr-store s3://BUCKET?...)",
                mode.s3_name().to_lowercase(),
                store.unwrap_or("the default file://DATA_DIR/ltr")
            );
        }
    }
    keep_freed_memory();
    let store = Store::open(&args.data_dir, args.store_options())
        .with_context(|| format!("opening store {}", args.data_dir.display()))?;
    let ltr = args
        .ltr_options()
        .map(crate::ltr::Ltr::open)
        .transpose()
        .context("opening the long-term store (--ltr-store)")?;
    if let Some(l) = &ltr {
        store.set_ltr(l.clone());
    }
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    let access = LocalAccess::init(&args.access_group)?;
    let nbd_unix = Some(PathBuf::from(&args.nbd_unix)).filter(|p| p != Path::new("none"));
    for sock in [Some(&args.control), nbd_unix.as_ref(), args.unix.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(dir) = sock.parent() {
            access.ensure_socket_dir(dir)?;
        }
    }
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let opts = DaemonOptions {
        agents: AgentListeners {
            listen: args.listen,
            unix: args.unix,
            tls,
            insecure: args.insecure,
            agent_uids: args.agent_uids,
            trusted_relays: args.trusted_relays,
            max_conns: args.max_agent_conns,
            quotas: Quotas {
                max_groups_per_agent: args.max_groups_per_agent,
                max_disks_per_group: args.max_disks_per_group,
                max_disk_size: args.max_disk_size,
                max_index_bytes_per_group: args.max_index_bytes_per_group,
                max_padding_bytes_per_group: args.max_padding_bytes_per_group,
                max_clock_skew: args.max_clock_skew,
                max_dedup_window_blocks: args.max_dedup_window,
            },
        },
        nbd: NbdOptions {
            listen: args.nbd_listen.filter(|l| l != "none"),
            unix: nbd_unix,
            tls: nbd_tls,
            clients: nbd_clients,
            insecure: args.nbd_insecure,
            group_writable: args.nbd_group_writable,
            limits: Limits {
                max_conns: args.nbd_max_conns,
                handshake: args.nbd_handshake_timeout,
                idle: nonzero(args.nbd_idle_timeout),
                max_point_age: nonzero(args.nbd_max_point_age),
            },
        },
        views: args.views,
        control: Some(args.control),
        control_tcp: args.control_listen.zip(control_tls),
        access,
        metrics: args.metrics_listen,
        ready_file: args.ready_file,
    };
    rt.block_on(super::run(store, opts))
}

impl ServeArgs {
    /// Every path from the command line, absolute from here on (see [`canonical`]).
    fn canonical(mut self) -> Result<ServeArgs> {
        let opt = |p: Option<PathBuf>| p.as_deref().map(canonical).transpose();
        self.data_dir = canonical(&self.data_dir)?;
        self.tls_dir = opt(self.tls_dir)?;
        self.unix = opt(self.unix)?;
        if self.nbd_unix != "none" {
            self.nbd_unix = canonical(Path::new(&self.nbd_unix))?
                .to_string_lossy()
                .into_owned();
        }
        self.views = opt(self.views)?;
        self.control = canonical(&self.control)?;
        self.ready_file = opt(self.ready_file)?;
        self.ltr_cache = opt(self.ltr_cache)?;
        Ok(self)
    }

    /// Long-term retention's setup (None: `--ltr-store none`).
    fn ltr_options(&self) -> Option<crate::ltr::LtrOptions> {
        let url = match self.ltr_store.as_deref() {
            Some("none") => return None,
            Some(u) => u.to_string(),
            None => format!("file://{}", self.data_dir.join("ltr").display()),
        };
        Some(crate::ltr::LtrOptions {
            url,
            cache_dir: self
                .ltr_cache
                .clone()
                .unwrap_or_else(|| self.data_dir.join("ltr-cache")),
            cache_bytes: self.ltr_cache_size,
            parallel: self.ltr_parallel as usize,
            gc_grace: self.ltr_gc_grace,
            interval: self.ltr_interval,
            gc_interval: self.ltr_gc_interval,
            test_hour: self.ltr_test_hour,
            object_lock: self.ltr_object_lock,
        })
    }

    fn store_options(&self) -> StoreOptions {
        StoreOptions {
            engine: self.io_engine,
            writer: WriterConfig {
                segment_size: self.segment_size,
                seal_after: self.seal_after,
                prealloc_step: self.segment_size.min(64 << 20),
                ..WriterConfig::default()
            },
            default_retention: self.retention,
            merge_interval: self.merge_interval,
            journal_compression: self.journal_compression,
            space_reserve: self
                .space_reserve
                .unwrap_or(StoreOptions::reserve_for(self.segment_size)),
        }
    }
}

/// The absolute, symlink-free form of a path flag. The daemon hands these paths to the kernel
/// (a loop device reports its backing file by its absolute path), to the processes it starts and
/// to clients, and compares them with what those report later: a relative `--views views` made
/// every such comparison fail. The path itself may not exist yet (a socket, a new data dir) or
/// may be a dead FUSE mount: then its parent is made canonical and the name joined to it.
fn canonical(p: &Path) -> Result<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Ok(c);
    }
    let abs = std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))?;
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Ok(abs);
    };
    Ok(match parent.canonicalize() {
        Ok(parent) => parent.join(name),
        // Its parent is made later (`/run/rewind` for the sockets): absolute is what matters.
        Err(_) => abs,
    })
}

/// Batches are megabytes each; by default glibc serves such sizes with fresh mmaps and returns them
/// on free, so every batch paid for page faults and kernel zeroing (a fifth of the daemon's CPU).
/// Keep them in the heap instead.
///
/// Kept for ever, though, the freed heap of every thread's arena only grew: the soak test saw
/// 450 MiB held after 80 NBD point reads, 37 MiB of it in use. A trim every 10 s gives the free
/// pages back; between trims, the hot path reuses what it freed.
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    if let Err(e) = rewind_linux::memtrim::spawn(Duration::from_secs(10)) {
        tracing::warn!(error = %e, "cannot start the memory trim thread: freed heap stays held");
    }
}
