//! `rewind`: the admin CLI. It talks to `rewind-mtd`'s control API; tables by default, `--json`
//! for scripts.

// Doc comments here are clap's --help text, where GROUP/DISK[@POINT] is usage syntax, not a
// rustdoc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rewind_mtd::cli::failover::{self, FailoverCmd};
use rewind_mtd::cli::plan::PlanCmd;
use rewind_mtd::client::{Client, DEFAULT_CONTROL};
use rewind_mtd::names::{parse_agent, parse_disk_source, parse_group, parse_overlay};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "rewind",
    version,
    about = "Rewind admin CLI (talks to rewind-mtd)"
)]
struct Cli {
    /// The control API socket of rewind-mtd.
    #[arg(long, global = true, env = "REWIND_CONTROL", default_value = DEFAULT_CONTROL)]
    control: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Protection groups, their disks, durable seq and retention horizon.
    Groups,
    /// Recovery points of a group: oldest and newest seq and time, tags, app-consistent marks.
    Points {
        #[arg(value_parser = parse_group)]
        #[arg(value_parser = parse_group)]
        group: String,
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
    /// A job of the control API (failovers run as jobs): follow it to its end.
    Job { id: u64 },
    /// Recent jobs.
    Jobs,
    /// Operations on a whole group (`rewind group delete G`).
    Group {
        #[command(subcommand)]
        cmd: rewind_mtd::cli::group::GroupCmd,
    },
}

#[derive(Subcommand)]
enum OverlayCmd {
    /// Make overlay NAME over GROUP/DISK[@POINT] (exported as GROUP/DISK@overlay:NAME).
    Create {
        #[arg(value_parser = parse_overlay)]
        name: String,
        export: String,
    },
    List,
    Delete {
        #[arg(value_parser = parse_overlay)]
        name: String,
    },
}

/// For clap: a retention window the daemon accepts (checked here for a clear error first).
fn parse_retention(s: &str) -> Result<String, String> {
    rewind_mtd::limits::parse_retention(s).map(|_| s.to_string())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("rewind: {e:#}");
        std::process::exit(1);
    }
}

/// The names in an export argument, checked before anything is sent (a malformed export is left
/// to the daemon, whose answer says what it expects).
fn check_export_names(export: &str) -> Result<()> {
    if let Ok(n) = rewind_mtd::views::exports::ExportName::parse(export) {
        rewind_mtd::names::check_export(&n)
            .map_err(|e| anyhow::anyhow!("export {export:?}: {e}"))?;
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Attach { export, .. } | Cmd::Mount { export, .. } => check_export_names(export)?,
        Cmd::Overlay {
            cmd: OverlayCmd::Create { export, .. },
        } => check_export_names(export)?,
        _ => {}
    }
    let c = Client::new(&cli.control)?;
    let out = match &cli.cmd {
        Cmd::Groups => {
            let v = c.get("/v1/groups")?;
            print_or(cli, &v, || groups_table(&v))
        }
        Cmd::Points { group } => {
            let v = c.get(&format!("/v1/groups/{group}/points"))?;
            print_or(cli, &v, || points_table(&v))
        }
        Cmd::Retention { group, retention } => {
            let v = c.post(
                &format!("/v1/groups/{group}/retention"),
                json!({ "retention": retention }),
            )?;
            print_or(cli, &v, || {
                format!("group {group}: retention {}\n", s(&v["retention"]))
            })
        }
        Cmd::Overlay { cmd } => match cmd {
            OverlayCmd::Create { name, export } => {
                let v = c.post("/v1/overlays", json!({ "name": name, "export": export }))?;
                print_or(cli, &v, || {
                    format!(
                        "overlay {} over {}/{} at seq {}: export {}/{}@overlay:{}\n",
                        s(&v["name"]),
                        s(&v["group"]),
                        s(&v["disk"]),
                        v["seq"],
                        s(&v["group"]),
                        s(&v["disk"]),
                        s(&v["name"])
                    )
                })
            }
            OverlayCmd::List => {
                let v = c.get("/v1/overlays")?;
                print_or(cli, &v, || overlays_table(&v))
            }
            OverlayCmd::Delete { name } => {
                let v = c.delete(&format!("/v1/overlays/{name}"))?;
                print_or(cli, &v, || format!("deleted overlay {name}\n"))
            }
        },
        Cmd::Attach {
            export,
            writable,
            partitions,
        } => {
            let v = c.post(
                "/v1/attachments",
                json!({ "export": export, "writable": writable, "partitions": partitions }),
            )?;
            print_or(cli, &v, || {
                let mut o = format!("{}\n", s(&v["device"]));
                for p in v["partitions"].as_array().into_iter().flatten() {
                    o += &format!("{}\n", s(p));
                }
                o
            })
        }
        Cmd::Detach { device } => {
            let v = c.post("/v1/detach", json!({ "device": device }))?;
            print_or(cli, &v, || format!("detached {device}\n"))
        }
        Cmd::Attachments => {
            let v = c.get("/v1/attachments")?;
            print_or(cli, &v, || attachments_table(&v))
        }
        Cmd::Mount {
            export,
            dir,
            partition,
            options,
        } => {
            let dir = std::path::absolute(dir)?;
            let v = c.post(
                "/v1/mounts",
                json!({ "export": export, "dir": dir, "partition": partition, "options": options }),
            )?;
            print_or(cli, &v, || {
                format!(
                    "mounted {export} at {} (device {}, throwaway overlay {})\n",
                    dir.display(),
                    s(&v["device"]),
                    s(&v["overlay"])
                )
            })
        }
        Cmd::Umount { dir } => {
            let dir = std::path::absolute(dir)?;
            let v = c.post("/v1/umount", json!({ "dir": dir }))?;
            print_or(cli, &v, || {
                format!(
                    "unmounted {} and detached {}\n",
                    dir.display(),
                    s(&v["device"])
                )
            })
        }
        Cmd::Failover { cmd } => failover::run(&c, cli.json, cmd)?,
        Cmd::Reverse {
            group,
            to,
            stop,
            agent_name,
            tls_dir,
            insecure,
            links_dir,
        } => failover::reverse(
            &c,
            cli.json,
            group,
            to.as_deref(),
            *stop,
            json!({ "agent_name": agent_name, "tls_dir": tls_dir, "insecure": insecure, "links_dir": links_dir }),
        )?,
        Cmd::Adopt {
            group,
            disks,
            from_live,
            retention,
            agent,
        } => failover::adopt(
            &c,
            cli.json,
            group,
            agent,
            disks,
            *from_live,
            retention.as_deref(),
        )?,
        Cmd::Plan { cmd } => rewind_mtd::cli::plan::run(&c, cli.json, cmd)?,
        Cmd::Group { cmd } => rewind_mtd::cli::group::run(&c, cli.json, cmd)?,
        Cmd::Job { id } => {
            let v = rewind_mtd::cli::job::follow(&c, &json!({ "id": id }), cli.json)?;
            serde_json::to_string_pretty(&v)? + "\n"
        }
        Cmd::Jobs => {
            let v = c.get("/v1/jobs")?;
            print_or(cli, &v, || jobs_table(&v))
        }
    };
    print!("{out}");
    Ok(())
}

fn jobs_table(v: &Value) -> String {
    let rows = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            vec![
                s(&j["id"]),
                s(&j["kind"]),
                s(&j["group"]),
                s(&j["state"]),
                format!("{:.0}%", j["percent"].as_f64().unwrap_or(0.0)),
                j["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| s(&j["message"])),
            ]
        })
        .collect();
    table(&["ID", "KIND", "GROUP", "STATE", "DONE", "MESSAGE"], rows)
}

fn print_or(cli: &Cli, v: &Value, table: impl FnOnce() -> String) -> String {
    if cli.json {
        serde_json::to_string_pretty(v).expect("json") + "\n"
    } else {
        table()
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l += c;
            } else {
                l += &format!("{c:<width$}  ", width = w[i]);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

fn bytes(v: &Value) -> String {
    let n = v.as_u64().unwrap_or(0) as f64;
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

fn groups_table(v: &Value) -> String {
    let rows = v["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let disks: Vec<String> = g["disks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| format!("{} ({})", s(&d["name"]), bytes(&d["size_bytes"])))
                .collect();
            vec![
                s(&g["name"]),
                disks.join(", "),
                s(&g["durable_seq"]),
                s(&g["newest_point"]["time"]),
                s(&g["horizon_seq"]),
                s(&g["retention"]),
                bytes(&g["journal_bytes"]),
                if g["consistent"].as_bool() == Some(false) {
                    "resyncing".into()
                } else {
                    "consistent".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "GROUP",
            "DISKS",
            "DURABLE",
            "NEWEST",
            "HORIZON",
            "RETENTION",
            "JOURNAL",
            "STATE",
        ],
        rows,
    )
}

fn points_table(v: &Value) -> String {
    if v["newest"].is_null() {
        return format!(
            "group {} has no points yet: nothing has been replicated into it (the initial sync \
             of an empty disk sends nothing; the first write makes the first point)\n",
            s(&v["group"])
        );
    }
    let mut out = format!(
        "group {}: every seq from {} ({}) to {} ({}) is a crash-consistent point; retention horizon seq {}\n",
        s(&v["group"]),
        s(&v["oldest"]["seq"]),
        s(&v["oldest"]["time"]),
        s(&v["newest"]["seq"]),
        s(&v["newest"]["time"]),
        s(&v["horizon_seq"]),
    );
    if v["consistent"].as_bool() == Some(false) {
        out += "NOT CONSISTENT: a resync is running; points from its start on are not recoverable until it ends\n";
    }
    for w in v["not_recoverable"].as_array().into_iter().flatten() {
        out += &format!(
            "not recoverable: seq {} to {} ({}, started {})\n",
            s(&w["from_seq"]),
            if w["to_seq"].is_null() {
                "now".to_string()
            } else {
                format!("{} (exclusive)", s(&w["to_seq"]))
            },
            s(&w["name"]),
            s(&w["started"])
        );
    }
    if let Some(t) = v["latest_app_consistent"].as_object() {
        out += &format!(
            "latest app-consistent: tag:{} (seq {})\n",
            s(&t["name"]),
            s(&t["seq"])
        );
    }
    let rows: Vec<Vec<String>> = v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                format!("tag:{}", s(&t["name"])),
                s(&t["seq"]),
                s(&t["time"]),
                s(&t["kind"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        out += "no tags\n";
    } else {
        out += &table(&["POINT", "SEQ", "TIME", "KIND"], rows);
    }
    out
}

fn overlays_table(v: &Value) -> String {
    let rows = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            vec![
                s(&o["name"]),
                format!("{}/{}", s(&o["group"]), s(&o["disk"])),
                format!("{} (seq {})", s(&o["point"]), s(&o["seq"])),
                bytes(&o["used_bytes"]),
                s(&o["users"]),
            ]
        })
        .collect();
    table(&["OVERLAY", "DISK", "POINT", "WRITTEN", "USERS"], rows)
}

fn attachments_table(v: &Value) -> String {
    let rows = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                s(&a["device"]),
                s(&a["export"]),
                if a["writable"].as_bool() == Some(true) {
                    "rw".into()
                } else {
                    "ro".into()
                },
                s(&a["mountpoint"]),
            ]
        })
        .collect();
    table(&["DEVICE", "EXPORT", "MODE", "MOUNTED AT"], rows)
}
