//! `rewind-mtd`: parse arguments, call the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rewind_mtd::daemon::args::ServeArgs;
use rewind_mtd::store::points::PointSpec;
use rewind_mtd::store::Store;
use rewind_mtd::views::view::View;

#[derive(Parser)]
#[command(name = "rewind-mtd", version, about = "Rewind master target daemon")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size of `ServeArgs` (many flags) costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Accept agent sessions and keep their replicas.
    Serve(ServeArgs),
    /// The process server: take agents' batches into a local cache, acknowledge them once
    /// durable there, and forward them to the master target in seq order.
    Relay(rewind_mtd::relay::RelayArgs),
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
    /// The site CA: make it (`init`) and issue certificates (`issue`).
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
    /// Issue a certificate for an agent (its name owns its groups), an NBD client, the
    /// configuration server (--site), or another master target of this site (--server).
    #[command(group(clap::ArgGroup::new("who").required(true).args(["agent", "client", "site", "relay", "server"])))]
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
        /// The configuration server's (rewind-site) certificate, the only kind the control API
        /// takes over TCP (`serve --control-listen`): ca.crt, site.crt and site.key in --out
        /// (default DIR/sites/NAME).
        #[arg(long)]
        site: Option<String>,
        /// A relay's (`rewind-mtd relay`) certificate for its sessions with master targets that
        /// trust it (`serve --trusted-relay NAME`): ca.crt, relay.crt and relay.key in --out
        /// (default DIR/relays/NAME). Add the relay's server certificate for its agents with
        /// `--server NAME-agents --host HOST --out DIR/relays/NAME`.
        #[arg(long)]
        relay: Option<String>,
        /// Another master target's server certificate: ca.crt, server.crt and server.key in
        /// --out (default DIR/servers/NAME), what `rewind-mtd serve --tls-dir` takes there.
        #[arg(long, requires = "hosts")]
        server: Option<String>,
        /// With --server: a DNS name or address that target is reached at (repeat).
        #[arg(long = "host", requires = "server")]
        hosts: Vec<String>,
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

fn main() -> Result<()> {
    // Before anything is created: replica data, overlays, state and logs are private unless made
    // otherwise on purpose (sockets are chmodded by `access`, the view tree has its own modes).
    // SAFETY: umask only changes this process's file-creation mask; no memory is involved.
    unsafe { libc::umask(0o077) };
    rewind_linux::clidocs::generate_if_asked(<Cli as clap::CommandFactory>::command());
    let cli = Cli::parse();
    // The daemon logs its work; the offline tools only warnings (their output is the point).
    let default_level = if matches!(cli.cmd, Cmd::Serve(_) | Cmd::Relay(_)) {
        "info"
    } else {
        "warn"
    };
    rewind_linux::logging::init(default_level);
    match cli.cmd {
        Cmd::Serve(args) => rewind_mtd::daemon::serve::serve(args),
        Cmd::Relay(args) => rewind_mtd::relay::run(args),
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
            site,
            relay,
            server,
            hosts,
            out,
            days,
        } => {
            if let Some(name) = server {
                let f = ca::issue_server(&dir, &name, &hosts, out.as_deref(), days)?;
                issued(&f);
                if let Some(parent) = f.cert.parent() {
                    println!(
                        "on {name}: rewind-mtd serve --tls-dir {} (copy {} there after every \
                         `ca revoke`)",
                        parent.display(),
                        dir.join(ca::CRL).display()
                    );
                }
                return Ok(());
            }
            let (kind, name) = match (agent, client, site, relay) {
                (Some(a), None, None, None) => (ca::Kind::Agent, a),
                (None, Some(c), None, None) => (ca::Kind::Client, c),
                (None, None, Some(s), None) => (ca::Kind::Site, s),
                (None, None, None, Some(r)) => (ca::Kind::Relay, r),
                _ => anyhow::bail!("give one of --agent, --client, --site, --relay and --server"),
            };
            let f = ca::issue(&dir, kind, &name, out.as_deref(), days)?;
            issued(&f);
            if kind == ca::Kind::Site {
                println!("rewind-site presents these to `rewind-mtd serve --control-listen`");
            } else if kind == ca::Kind::Relay {
                println!(
                    "the relay presents these upstream (`rewind-mtd relay --tls-dir`); the master \
                     target must trust it: `rewind-mtd serve --trusted-relay {name}`"
                );
            } else if kind == ca::Kind::Agent {
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
