//! `rewind-mtd`: parse arguments, call the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rewind_mtd::store::engine::EngineKind;
use rewind_mtd::store::points::PointSpec;
use rewind_mtd::store::writer::WriterConfig;
use rewind_mtd::store::{Store, StoreOptions};

#[derive(Parser)]
#[command(name = "rewind-mtd", version, about = "Rewind master target daemon")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Accept agent sessions and keep their replicas.
    Serve {
        #[arg(long)]
        data_dir: PathBuf,
        /// TCP address for agents: mutual TLS with --tls-dir, or plain with --insecure on loopback.
        #[arg(long)]
        listen: Option<String>,
        /// CA directory made by `rewind-mtd ca init`: agents must present a certificate from it.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Accept plain TCP (no TLS) on a loopback --listen address.
        #[arg(long)]
        insecure: bool,
        /// Unix socket for agents on this host.
        #[arg(long)]
        unix: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "uring")]
        io_engine: EngineKind,
        /// Retention window for groups created by a first HELLO (e.g. 24h, 30m).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        retention: Duration,
        /// Seal a journal segment at this size.
        #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
        segment_size: u64,
        /// Seal an open segment after this long even if not full (so it can expire and merge).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        seal_after: Duration,
        /// How often the merger looks for expired segments.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        merge_interval: Duration,
        /// NBD exports on TCP ("none" for no TCP listener).
        #[arg(long, default_value = "127.0.0.1:10809")]
        nbd_listen: String,
        /// NBD exports on a unix socket ("none" for no unix listener).
        #[arg(long, default_value = "/run/rewind/nbd.sock")]
        nbd_unix: String,
        /// Mount the FUSE view tree here (GROUP/DISK/latest.img, at/POINT.img, overlays/NAME.img).
        #[arg(long)]
        views: Option<PathBuf>,
        /// The control API's unix socket (what the `rewind` CLI talks to).
        #[arg(long, default_value = "/run/rewind/mtd.sock")]
        control: PathBuf,
        /// Members of this group may connect to the daemon's unix sockets (mode 0660, owner
        /// root); created as a system group if missing. Nobody else may.
        #[arg(long, default_value = rewind_mtd::access::DEFAULT_GROUP)]
        access_group: String,
        /// Write the bound addresses here once listening (agents' first, then `nbd ADDR`,
        /// `views PATH`, `control PATH`).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Make a group from existing disks (the old source disks after a failover), with the daemon
    /// stopped: replication into it then only sends the blocks that differ (`rewind adopt` does
    /// the same through a running daemon).
    Adopt {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        group: String,
        /// NAME=PATH, a raw image or block device; repeat per disk.
        #[arg(long = "disk", required = true)]
        disks: Vec<String>,
        /// Retention window of the new group.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        retention: Duration,
    },
    /// Write one disk of a group, as of a point, to a raw image file.
    Dump {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        group: String,
        #[arg(long)]
        disk: String,
        /// latest | seq:N | tag:NAME | latest-app-consistent | RFC 3339 time | -15m
        #[arg(long, default_value = "latest", allow_hyphen_values = true)]
        at: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// The site CA: make it (`init`) and issue agent certificates (`issue`).
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Report groups, disks, segments, points, retention horizon and index size (offline).
    Inspect {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Make the site CA and this target's server certificate.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// A DNS name or address agents connect to (repeat; localhost, 127.0.0.1 and the host
        /// name are always included).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Issue a certificate for an agent; its name is the identity that owns its groups.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        agent: String,
        /// Where to write NAME.crt and NAME.key (default DIR/agents).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The daemon logs its work; the offline tools only warnings (their output is the point).
    let default_level = if matches!(cli.cmd, Cmd::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Serve {
            data_dir,
            listen,
            tls_dir,
            insecure,
            unix,
            io_engine,
            retention,
            segment_size,
            seal_after,
            merge_interval,
            nbd_listen,
            nbd_unix,
            views,
            control,
            access_group,
            ready_file,
        } => {
            // Every path from the command line, absolute from here on (see `canonical`).
            let data_dir = canonical(&data_dir)?;
            let tls_dir = tls_dir.as_deref().map(canonical).transpose()?;
            let unix = unix.as_deref().map(canonical).transpose()?;
            let nbd_unix = match nbd_unix.as_str() {
                "none" => nbd_unix,
                p => canonical(Path::new(p))?.to_string_lossy().into_owned(),
            };
            let views = views.as_deref().map(canonical).transpose()?;
            let control = canonical(&control)?;
            let ready_file = ready_file.as_deref().map(canonical).transpose()?;
            let opts = StoreOptions {
                engine: io_engine,
                writer: WriterConfig {
                    segment_size,
                    seal_after,
                    prealloc_step: segment_size.min(64 << 20),
                    ..WriterConfig::default()
                },
                default_retention: retention,
                merge_interval,
            };
            let tls = tls_dir
                .map(|d| rewind_mtd::tls::server_config(&d))
                .transpose()
                .context("loading the TLS files")?;
            keep_freed_memory();
            let store = Store::open(&data_dir, opts)
                .with_context(|| format!("opening store {}", data_dir.display()))?;
            let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
            let access = rewind_mtd::access::LocalAccess::init(&access_group)?;
            let nbd_unix = Some(PathBuf::from(nbd_unix)).filter(|p| p != Path::new("none"));
            for sock in [Some(&control), nbd_unix.as_ref(), unix.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Some(dir) = sock.parent() {
                    access.ensure_socket_dir(dir)?;
                }
            }
            rt.block_on(rewind_mtd::daemon::run(
                store,
                rewind_mtd::daemon::DaemonOptions {
                    agents: rewind_mtd::server::AgentListeners {
                        listen,
                        unix,
                        tls,
                        insecure,
                    },
                    nbd: rewind_mtd::nbd::NbdOptions {
                        listen: Some(nbd_listen).filter(|l| l != "none"),
                        unix: nbd_unix,
                    },
                    views,
                    control: Some(control),
                    access,
                    ready_file,
                },
            ))
        }
        Cmd::Adopt {
            data_dir,
            group,
            disks,
            retention,
        } => rewind_mtd::failover::adopt::offline(&data_dir, &group, &disks, retention),
        Cmd::Dump {
            data_dir,
            group,
            disk,
            at,
            output,
        } => {
            let store = Store::open_readonly(&data_dir)
                .with_context(|| format!("opening store {}", data_dir.display()))?;
            let spec = PointSpec::parse(&at)?;
            let view = store
                .view(&group, &disk, &spec)
                .with_context(|| format!("opening {group}/{disk} at {at}"))?;
            let size = rewind_mtd::dump::dump(&view, &output)?;
            eprintln!(
                "wrote {group}/{disk} at seq {} ({size} bytes) to {}",
                view.seq().0,
                output.display()
            );
            Ok(())
        }
        Cmd::Ca { cmd } => match cmd {
            CaCmd::Init { dir, names } => {
                for p in rewind_mtd::tls::ca::init(&dir, &names)? {
                    println!("wrote {}", p.display());
                }
                println!(
                    "serve with: rewind-mtd serve --tls-dir {} --listen HOST:PORT ...",
                    dir.display()
                );
                Ok(())
            }
            CaCmd::Issue { dir, agent, out } => {
                let (c, k) = rewind_mtd::tls::ca::issue(&dir, &agent, out.as_deref())?;
                println!("wrote {}", c.display());
                println!("wrote {}", k.display());
                println!(
                    "give the agent these and {}",
                    dir.join(rewind_mtd::tls::ca::CA_CERT).display()
                );
                Ok(())
            }
        },
        Cmd::Inspect { data_dir, json } => {
            let store = Store::open_readonly(&data_dir)
                .with_context(|| format!("opening store {}", data_dir.display()))?;
            let report = rewind_mtd::inspect::report(&store);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", rewind_mtd::inspect::render(&report));
            }
            Ok(())
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
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
