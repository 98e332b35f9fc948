//! `rewind-mtd`: parse arguments, call the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rewind_mtd::store::engine::EngineKind;
use rewind_mtd::store::points::PointSpec;
use rewind_mtd::store::writer::WriterConfig;
use rewind_mtd::store::{Store, StoreOptions};
use rewind_mtd::views::view::View;

#[derive(Parser)]
#[command(name = "rewind-mtd", version, about = "Rewind master target daemon")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size of `Serve` (many flags) costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
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
        /// FOR TESTS ONLY: accept plain TCP (no TLS) on a loopback --listen address. Any local
        /// user can then connect and claim to be any agent.
        #[arg(long)]
        insecure: bool,
        /// Unix socket for agents on this host (root and --agent-uid only).
        #[arg(long)]
        unix: Option<PathBuf>,
        /// A uid besides root that may speak for agents on --unix (repeat). Other members of
        /// the access group are refused there.
        #[arg(long = "agent-uid")]
        agent_uids: Vec<u32>,
        /// Open agent connections per listener; more are closed at once.
        #[arg(long, default_value_t = rewind_mtd::server::DEFAULT_MAX_CONNS)]
        max_agent_conns: usize,
        /// Groups one agent may own; a HELLO that would create more is refused whole.
        #[arg(long, default_value_t = 64)]
        max_groups_per_agent: usize,
        /// Disks in one group.
        #[arg(long, default_value_t = 64)]
        max_disks_per_group: usize,
        /// Largest disk an agent may declare (an overlay keeps 1 bit per 4 KiB in memory).
        #[arg(long, default_value = "8TiB", value_parser = parse_bytes)]
        max_disk_size: u64,
        /// Estimated extent-index memory of one group's unmerged journal; batches past it are
        /// refused until the merger frees some.
        #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
        max_index_bytes_per_group: u64,
        /// Journal bytes one group may spend padding records smaller than 4 KiB to a block.
        #[arg(long, default_value = "4GiB", value_parser = parse_bytes)]
        max_padding_bytes_per_group: u64,
        /// How far ahead of this host's clock a batch may be stamped.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        max_clock_skew: Duration,
        #[arg(long, value_enum, default_value = "uring")]
        io_engine: EngineKind,
        /// Retention window for groups created by a first HELLO (e.g. 24h, 30m).
        #[arg(long, default_value = "24h", value_parser = rewind_mtd::limits::parse_retention)]
        retention: Duration,
        /// Seal a journal segment at this size.
        #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
        segment_size: u64,
        /// Seal an open segment after this long even if not full (so it can expire and merge).
        #[arg(long, default_value = "60s", value_parser = rewind_mtd::limits::parse_interval)]
        seal_after: Duration,
        /// How often the merger looks for expired segments.
        #[arg(long, default_value = "1s", value_parser = rewind_mtd::limits::parse_interval)]
        merge_interval: Duration,
        /// NBD exports on TCP (off by default; "none" for off). TCP needs TLS: --nbd-tls-dir and
        /// --nbd-clients (or --nbd-insecure on a loopback address, for tests).
        #[arg(long)]
        nbd_listen: Option<String>,
        /// NBD exports on a unix socket ("none" for no unix listener): root may read and write
        /// every export, members of the access group read them all.
        #[arg(long, default_value = "/run/rewind/nbd.sock")]
        nbd_unix: String,
        /// CA directory made by `rewind-mtd ca init`: NBD clients on TCP must negotiate STARTTLS
        /// and present a certificate from it.
        #[arg(long)]
        nbd_tls_dir: Option<PathBuf>,
        /// TOML file naming what each NBD client certificate may read and write:
        /// `[clients.NAME] read = ["GROUP" or "*"], write = ["GROUP"]`. Unnamed certificates get
        /// nothing.
        #[arg(long)]
        nbd_clients: Option<PathBuf>,
        /// TESTS ONLY: plain NBD on a loopback --nbd-listen address, no TLS; every local user may
        /// then read and write every export over it.
        #[arg(long)]
        nbd_insecure: bool,
        /// Members of the access group may also open writable NBD exports (overlays, @test,
        /// @live) on the unix socket.
        #[arg(long)]
        nbd_group_writable: bool,
        /// Connections per NBD listener; more are closed at once.
        #[arg(long, default_value_t = 256)]
        nbd_max_conns: usize,
        /// An NBD client must finish its handshake (TLS included) within this.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        nbd_handshake_timeout: Duration,
        /// Close a read-only NBD connection idle this long ("0" for never).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        nbd_idle_timeout: Duration,
        /// Longest an NBD client may hold a read-only point open ("0" for no limit): past it the
        /// point is released so retention can merge, and the client's requests fail with EIO.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        nbd_max_point_age: Duration,
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
        #[arg(long, value_parser = rewind_mtd::names::parse_group)]
        group: String,
        /// NAME=PATH, a raw image or block device; repeat per disk.
        #[arg(long = "disk", required = true, value_parser = rewind_mtd::names::parse_disk_source)]
        disks: Vec<String>,
        /// Retention window of the new group.
        #[arg(long, default_value = "24h", value_parser = rewind_mtd::limits::parse_retention)]
        retention: Duration,
        /// The agent that will replicate into the group: it owns the group.
        #[arg(long, value_parser = rewind_mtd::names::parse_agent)]
        agent: String,
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
        /// A DNS name or address agents and NBD clients connect to (repeat; localhost,
        /// 127.0.0.1 and the host name are always included).
        #[arg(long = "name")]
        names: Vec<String>,
        /// Validity of the server certificate, in days.
        #[arg(long, default_value_t = rewind_mtd::tls::ca::DEFAULT_DAYS)]
        days: u32,
        /// Validity of the CA, in days (no certificate it issues outlives it).
        #[arg(long, default_value_t = rewind_mtd::tls::ca::DEFAULT_CA_DAYS)]
        ca_days: u32,
    },
    /// Issue a certificate for an agent (its name owns its groups) or an NBD client.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["agent", "client"])))]
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// An agent's certificate: NAME.crt and NAME.key in --out (default DIR/agents).
        #[arg(long)]
        agent: Option<String>,
        /// An NBD client's certificate: ca-cert.pem, client-cert.pem and client-key.pem in
        /// --out (default DIR/clients/NAME), as qemu's tls-creds-x509 and libnbd read them.
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = rewind_mtd::tls::ca::DEFAULT_DAYS)]
        days: u32,
    },
    /// Issue NAME a new certificate (new key and serial, same name: it keeps owning its
    /// groups), replacing its files; or, with --server, this target's (restart it then). The old
    /// certificate stays valid until revoked (`ca revoke --serial OLD`) or expired.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["name", "server"])))]
    Renew {
        #[arg(long)]
        dir: PathBuf,
        name: Option<String>,
        #[arg(long)]
        server: bool,
        /// With --server: names and addresses for the new server certificate (as `ca init`).
        #[arg(long = "server-name", requires = "server")]
        server_names: Vec<String>,
        #[arg(long, conflicts_with = "server")]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = rewind_mtd::tls::ca::DEFAULT_DAYS)]
        days: u32,
    },
    /// Revoke every certificate issued to NAME, or one by --serial, and rewrite DIR/crl.pem;
    /// the target refuses them from its next handshake on.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["name", "serial"])))]
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        name: Option<String>,
        /// The serial, in hex as `ca list` shows it.
        #[arg(long)]
        serial: Option<String>,
    },
    /// List the certificates issued (serial, kind, name, expiry, revocation).
    List {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    // Before anything is created: replica data, overlays, state and logs are private unless made
    // otherwise on purpose (sockets are chmodded by `access`, the view tree has its own modes).
    // SAFETY: umask only changes this process's file-creation mask; no memory is involved.
    unsafe { libc::umask(0o077) };
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
            agent_uids,
            max_agent_conns,
            max_groups_per_agent,
            max_disks_per_group,
            max_disk_size,
            max_index_bytes_per_group,
            max_padding_bytes_per_group,
            max_clock_skew,
            io_engine,
            retention,
            segment_size,
            seal_after,
            merge_interval,
            nbd_listen,
            nbd_unix,
            nbd_tls_dir,
            nbd_clients,
            nbd_insecure,
            nbd_group_writable,
            nbd_max_conns,
            nbd_handshake_timeout,
            nbd_idle_timeout,
            nbd_max_point_age,
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
            let nbd_tls = nbd_tls_dir
                .map(|d| rewind_mtd::tls::server_config(&d))
                .transpose()
                .context("loading the NBD TLS files (--nbd-tls-dir)")?;
            let nbd_clients = nbd_clients
                .map(|p| rewind_mtd::nbd::clients::Clients::load(&p).map(std::sync::Arc::new))
                .transpose()?;
            if nbd_max_conns == 0 {
                anyhow::bail!("--nbd-max-conns 0 would refuse every NBD client");
            }
            let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
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
                        agent_uids,
                        max_conns: max_agent_conns,
                        quotas: rewind_mtd::store::quota::Quotas {
                            max_groups_per_agent,
                            max_disks_per_group,
                            max_disk_size,
                            max_index_bytes_per_group,
                            max_padding_bytes_per_group,
                            max_clock_skew,
                        },
                    },
                    nbd: rewind_mtd::nbd::NbdOptions {
                        listen: nbd_listen.filter(|l| l != "none"),
                        unix: nbd_unix,
                        tls: nbd_tls,
                        clients: nbd_clients,
                        insecure: nbd_insecure,
                        group_writable: nbd_group_writable,
                        limits: rewind_mtd::nbd::Limits {
                            max_conns: nbd_max_conns,
                            handshake: nbd_handshake_timeout,
                            idle: nonzero(nbd_idle_timeout),
                            max_point_age: nonzero(nbd_max_point_age),
                        },
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
            agent,
        } => rewind_mtd::failover::adopt::offline(&data_dir, &group, &agent, &disks, retention),
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
            let view = View::open(&store, &group, &disk, &spec)
                .with_context(|| format!("opening {group}/{disk} at {at}"))?;
            let size = rewind_mtd::views::dump::dump(&view, &output)?;
            eprintln!(
                "wrote {group}/{disk} at seq {} ({size} bytes) to {}",
                view.seq().0,
                output.display()
            );
            Ok(())
        }
        Cmd::Ca { cmd } => ca(cmd),
        Cmd::Inspect { data_dir, json } => {
            let store = Store::open_readonly(&data_dir)
                .with_context(|| format!("opening store {}", data_dir.display()))?;
            let report = rewind_mtd::views::inspect::report(&store);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", rewind_mtd::views::inspect::render(&report));
            }
            Ok(())
        }
    }
}

fn ca(cmd: CaCmd) -> Result<()> {
    use rewind_mtd::tls::ca;
    let issued = |f: &ca::IssuedFiles| {
        println!(
            "issued {} certificate {} serial {} valid until {}",
            f.record.kind, f.record.name, f.record.serial, f.record.not_after
        );
        for p in [Some(&f.cert), Some(&f.key), f.ca.as_ref()]
            .into_iter()
            .flatten()
        {
            println!("wrote {}", p.display());
        }
    };
    match cmd {
        CaCmd::Init {
            dir,
            names,
            days,
            ca_days,
        } => {
            for p in ca::init(&dir, &names, ca::Validity { ca_days, days })? {
                println!("wrote {}", p.display());
            }
            println!(
                "serve with: rewind-mtd serve --tls-dir {} --listen HOST:PORT ...",
                dir.display()
            );
        }
        CaCmd::Issue {
            dir,
            agent,
            client,
            out,
            days,
        } => {
            let (kind, name) = match (agent, client) {
                (Some(a), None) => (ca::Kind::Agent, a),
                (None, Some(c)) => (ca::Kind::Client, c),
                _ => anyhow::bail!("give one of --agent NAME and --client NAME"),
            };
            let f = ca::issue(&dir, kind, &name, out.as_deref(), days)?;
            issued(&f);
            if kind == ca::Kind::Agent {
                println!(
                    "give the agent these and {}",
                    dir.join(ca::CA_CERT).display()
                );
            } else if let Some(parent) = f.cert.parent() {
                println!(
                    "qemu: --object tls-creds-x509,id=tls0,endpoint=client,dir={}; \
                     nbdinfo/nbdcopy: nbds://HOST/EXPORT?tls-certificates={}",
                    parent.display(),
                    parent.display()
                );
            }
        }
        CaCmd::Renew {
            dir,
            name,
            server,
            server_names,
            out,
            days,
        } => {
            if server {
                let f = ca::renew_server(&dir, &server_names, days)?;
                issued(&f);
                println!("restart rewind-mtd serve to present it");
            } else {
                let name = name.context("give NAME or --server")?;
                let f = ca::renew(&dir, &name, out.as_deref(), days)?;
                issued(&f);
                println!(
                    "the old certificate of {name} stays valid: once the new one is in place, \
                     `rewind-mtd ca revoke --dir {} --serial OLD`",
                    dir.display()
                );
            }
        }
        CaCmd::Revoke { dir, name, serial } => {
            let what = match (name, serial) {
                (Some(n), None) => ca::RevokeWhat::Name(n),
                (None, Some(s)) => ca::RevokeWhat::Serial(s),
                _ => anyhow::bail!("give NAME or --serial SERIAL"),
            };
            let newly = ca::revoke(&dir, &what)?;
            for c in &newly {
                println!(
                    "revoked {} certificate {} serial {}",
                    c.kind, c.name, c.serial
                );
            }
            if newly.is_empty() {
                println!("already revoked");
            }
            println!(
                "wrote {}: the target refuses them from its next handshake on \
                 (sessions already open continue until they reconnect)",
                dir.join(ca::CRL).display()
            );
        }
        CaCmd::List { dir, json } => {
            let all = ca::list(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<32}  {:<6}  {:<20}  {:<20}  REVOKED",
                    "SERIAL", "KIND", "NAME", "NOT AFTER"
                );
                for c in all {
                    println!(
                        "{:<32}  {:<6}  {:<20}  {:<20}  {}",
                        c.serial,
                        c.kind.to_string(),
                        c.name,
                        c.not_after,
                        c.revoked.as_deref().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(())
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
