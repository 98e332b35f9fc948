//! `rewind`, the admin CLI: the clap tree and the dispatch. It talks to `rewind-mtd`'s control
//! API through [`crate::client::Client`], with the types of [`crate::api`]; each subcommand's
//! request and output are in its own file, the shared table and JSON printing in `table.rs`.

// Doc comments here are clap's --help text, where GROUP/DISK[@POINT] is usage syntax, not a
// rustdoc link.
#![allow(rustdoc::broken_intra_doc_links)]

pub mod adopt;
pub mod attach;
pub mod attachments;
pub mod detach;
pub mod drill;
pub mod failover;
pub mod group;
pub mod groups;
pub mod job;
pub mod jobs;
pub mod ltr;
pub mod mount;
pub mod overlay;
pub mod plan;
pub mod points;
pub mod retention;
pub mod reverse;
pub mod site;
pub mod table;
pub mod umount;
pub mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::client::{Client, DEFAULT_CONTROL};
use crate::names::{parse_agent, parse_disk_source, parse_group};
use drill::DrillCmd;
use failover::FailoverCmd;
use group::GroupCmd;
use overlay::OverlayCmd;
use plan::PlanCmd;

#[derive(Parser)]
#[command(
    name = "rewind",
    version,
    about = "Rewind admin CLI (talks to rewind-mtd)"
)]
pub struct Cli {
    /// The control API socket of rewind-mtd.
    #[arg(long, global = true, env = "REWIND_CONTROL", default_value = DEFAULT_CONTROL)]
    control: PathBuf,
    /// The configuration server, https://HOST:PORT: failover and plan commands go to it (with
    /// REWIND_SITE_TOKEN) instead of --control; the other commands stay on --control.
    #[arg(long, global = true, env = "REWIND_SITE")]
    site: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum LtrCmd {
    /// Delete expired long-term points, then chunks no point names (older than the grace).
    Gc {
        /// Keep unreferenced chunks younger than this (default: the daemon's --ltr-gc-grace).
        #[arg(long)]
        grace: Option<String>,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Protection groups, their disks, durable seq and retention horizon.
    Groups,
    /// Recovery points of a group: oldest and newest seq and time, tags, app-consistent marks.
    Points {
        #[arg(value_parser = parse_group)]
        group: String,
    },
    /// Long-term retention: points kept in object storage past the window.
    Ltr {
        #[command(subcommand)]
        cmd: LtrCmd,
    },
    /// Change a group's retention window (e.g. 24h); older history is merged into the base.
    Retention {
        #[arg(value_parser = parse_group)]
        group: String,
        #[arg(value_parser = parse_retention)]
        retention: String,
    },
    /// Writable overlays over recovery points.
    Overlay {
        #[command(subcommand)]
        cmd: OverlayCmd,
    },
    /// Attach a loop device to GROUP/DISK[@POINT] (or @overlay:NAME); prints the device.
    Attach {
        export: String,
        /// Writable, through a throwaway overlay (the point itself never changes).
        #[arg(long)]
        writable: bool,
        /// Scan partitions (-P): /dev/loopNp1 ...
        #[arg(long, short = 'P')]
        partitions: bool,
    },
    /// Detach a loop device made by `rewind attach`.
    Detach { device: String },
    /// Loop devices and mounts made by `rewind attach` and `rewind mount`.
    Attachments,
    /// Mount GROUP/DISK[@POINT] at DIR through a throwaway overlay (so a filesystem journal can
    /// replay; the point itself never changes).
    Mount {
        export: String,
        dir: PathBuf,
        #[arg(long)]
        partition: Option<u32>,
        /// Mount options, as for mount -o. Mounts are nosuid,nodev,noexec unless these say
        /// otherwise (`-o exec`, `-o suid`, `-o dev`).
        #[arg(short = 'o', long)]
        options: Option<String>,
    },
    /// Unmount a `rewind mount`, detach its loop device and drop its overlay.
    Umount { dir: PathBuf },
    /// Test, planned and unplanned failover, change of point, commit.
    Failover {
        #[command(subcommand)]
        cmd: FailoverCmd,
    },
    /// Drills: prove a group's points recoverable (test failover, boot in isolation, probes).
    Drill {
        #[command(subcommand)]
        cmd: DrillCmd,
    },
    /// Protect a committed failover's live disks and replicate them to another site.
    Reverse {
        #[arg(value_parser = parse_group)]
        group: String,
        /// The other site's rewind-mtd agent listener: HOST:PORT, tcp:HOST:PORT or unix:PATH.
        #[arg(long)]
        to: Option<String>,
        /// Stop reverse replication.
        #[arg(long)]
        stop: bool,
        #[arg(long, value_parser = parse_agent)]
        agent_name: Option<String>,
        /// TLS files for the agent (`rewind-mtd ca` layout of the other site's CA).
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Plain TCP to a loopback address.
        #[arg(long)]
        insecure: bool,
        /// Where the protected devices appear [default: /dev/rewind].
        #[arg(long)]
        links_dir: Option<PathBuf>,
    },
    /// Make a replica from existing disks (the old source disks, or --from-live: this site's live
    /// disks), so replication into it only sends blocks that differ.
    Adopt {
        #[arg(value_parser = parse_group)]
        group: String,
        /// NAME=PATH, a raw image or block device; repeat per disk.
        #[arg(long = "disk", value_parser = parse_disk_source)]
        disks: Vec<String>,
        #[arg(long)]
        from_live: bool,
        #[arg(long, value_parser = parse_retention)]
        retention: Option<String>,
        /// The agent that will replicate into the group: it owns the group, and no other
        /// agent's HELLO is accepted for it.
        #[arg(long, value_parser = parse_agent)]
        agent: String,
    },
    /// Recovery plans: run, status, continue past a manual step, cleanup.
    Plan {
        #[command(subcommand)]
        cmd: PlanCmd,
    },
    /// Compare the source's disks with the replica while the workload runs; report (and with
    /// --repair resend) the ranges that differ.
    Verify {
        #[arg(value_parser = parse_group)]
        group: String,
        /// Compare at this point first (latest, seq:N, tag:NAME, a time); regions written since
        /// are compared at a later point.
        #[arg(long)]
        point: Option<String>,
        /// Resend the differing ranges inside a resync window.
        #[arg(long)]
        repair: bool,
        /// How long regions the workload keeps writing are retried [default: 600].
        #[arg(long)]
        deadline_secs: Option<u64>,
    },
    /// A job of the control API (failovers run as jobs): follow it to its end.
    Job { id: u64 },
    /// Recent jobs.
    Jobs,
    /// Operations on a whole group (`rewind group delete G`).
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
}

/// For clap: a retention window the daemon accepts (checked here for a clear error first).
fn parse_retention(s: &str) -> Result<String, String> {
    crate::limits::parse_retention(s).map(|_| s.to_string())
}

/// Parse the command line, run it, print what it says; on an error, say it and exit 1.
pub fn main() {
    rewind_linux::clidocs::generate_if_asked(<Cli as clap::CommandFactory>::command());
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("rewind: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The names in an export argument, checked before anything is sent (a malformed export is left
/// to the daemon, whose answer says what it expects).
fn check_export_names(export: &str) -> Result<()> {
    if let Ok(n) = crate::views::exports::ExportName::parse(export) {
        crate::names::check_export(&n).map_err(|e| anyhow::anyhow!("export {export:?}: {e}"))?;
    }
    Ok(())
}

/// Run one command; what to print.
fn run(cli: &Cli) -> Result<String> {
    match &cli.cmd {
        Cmd::Attach { export, .. } | Cmd::Mount { export, .. } => check_export_names(export)?,
        Cmd::Overlay {
            cmd: OverlayCmd::Create { export, .. },
        } => check_export_names(export)?,
        _ => {}
    }
    let json = cli.json;
    // Failover and plan commands go to the site when one is given; the rest are per target
    // (so REWIND_SITE in the environment leaves `rewind groups` and the like on --control).
    if let Some(url) = &cli.site {
        match &cli.cmd {
            Cmd::Failover { cmd } => {
                return site::failover(&site::SiteClient::new(url)?, json, cmd)
            }
            Cmd::Plan { cmd } => return site::plan(&site::SiteClient::new(url)?, json, cmd),
            _ => {}
        }
    }
    let c = Client::new(&cli.control)?;
    match &cli.cmd {
        Cmd::Groups => groups::run(&c, json),
        Cmd::Points { group } => points::run(&c, json, group),
        Cmd::Ltr {
            cmd: LtrCmd::Gc { grace },
        } => ltr::gc(&c, json, grace.as_deref()),
        Cmd::Retention { group, retention } => retention::run(&c, json, group, retention),
        Cmd::Overlay { cmd } => overlay::run(&c, json, cmd),
        Cmd::Attach {
            export,
            writable,
            partitions,
        } => attach::run(&c, json, export, *writable, *partitions),
        Cmd::Detach { device } => detach::run(&c, json, device),
        Cmd::Attachments => attachments::run(&c, json),
        Cmd::Mount {
            export,
            dir,
            partition,
            options,
        } => mount::run(&c, json, export, dir, *partition, options.as_deref()),
        Cmd::Umount { dir } => umount::run(&c, json, dir),
        Cmd::Failover { cmd } => failover::run(&c, json, cmd),
        Cmd::Drill { cmd } => drill::run(&c, json, cmd),
        Cmd::Reverse {
            group,
            to,
            stop,
            agent_name,
            tls_dir,
            insecure,
            links_dir,
        } => {
            if *stop {
                reverse::stop(&c, json, group)
            } else {
                let to = to
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("give --to HOST:PORT (or --stop)"))?;
                let req = crate::api::failover::ReverseRequest {
                    to,
                    agent_name: agent_name.clone(),
                    tls_dir: tls_dir.clone(),
                    insecure: *insecure,
                    links_dir: links_dir.clone(),
                };
                reverse::start(&c, json, group, &req)
            }
        }
        Cmd::Adopt {
            group,
            disks,
            from_live,
            retention,
            agent,
        } => adopt::run(
            &c,
            json,
            group,
            agent,
            disks,
            *from_live,
            retention.as_deref(),
        ),
        Cmd::Plan { cmd } => plan::run(&c, json, cmd),
        Cmd::Group { cmd } => group::run(&c, json, cmd),
        Cmd::Job { id } => job::run(&c, json, *id),
        Cmd::Jobs => jobs::run(&c, json),
        Cmd::Verify {
            group,
            point,
            repair,
            deadline_secs,
        } => verify::run(&c, json, group, point.as_deref(), *repair, *deadline_secs),
    }
}
