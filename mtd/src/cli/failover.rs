//! `rewind failover test|cleanup|planned|unplanned|change-point|commit|configure|status`, and
//! the human summary of a failover's disks that `rewind reverse` shares.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::job;
use super::table::{json_text, wire_name};
use crate::api::failover::{
    ConfigureRequest, DiskSet, FailoverShow, GroupFailover, PointRequest, Promotion, Reverse,
};
use crate::api::jobs::JobResult;
use crate::api::Empty;
use crate::client::Client;
use crate::names::parse_group;

#[derive(Subcommand)]
pub enum FailoverCmd {
    /// Writable copies of one point of every disk (GROUP/DISK@test over NBD, loop devices), and
    /// the configured boot command; replication goes on.
    Test {
        #[arg(value_parser = parse_group)]
        group: String,
        /// latest (default), latest-app-consistent, tag:NAME, a time, -15m, seq:N
        #[arg(long)]
        point: Option<String>,
    },
    /// Discard a test failover.
    Cleanup {
        #[arg(value_parser = parse_group)]
        #[arg(value_parser = parse_group)]
        group: String,
    },
    /// Drain the source agent, then promote at its planned-failover tag (no data lost).
    Planned {
        #[arg(value_parser = parse_group)]
        #[arg(value_parser = parse_group)]
        group: String,
    },
    /// Promote a chosen point when the source is gone.
    Unplanned {
        #[arg(value_parser = parse_group)]
        group: String,
        #[arg(long)]
        point: String,
    },
    /// Before commit: make the live disks over another point.
    ChangePoint {
        #[arg(value_parser = parse_group)]
        group: String,
        #[arg(long)]
        point: String,
    },
    /// Make the promoted point permanent and discard the later history.
    Commit {
        #[arg(value_parser = parse_group)]
        #[arg(value_parser = parse_group)]
        group: String,
    },
    /// Set the boot command failovers run ({nbd:DISK}, {loop:DISK}, {group}); --clear removes it.
    Configure {
        #[arg(value_parser = parse_group)]
        group: String,
        #[arg(long, conflicts_with = "clear")]
        boot: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// What the group's failovers left in place (test disks, live disks, reverse replication).
    Status {
        #[arg(value_parser = parse_group)]
        #[arg(value_parser = parse_group)]
        group: Option<String>,
    },
}

/// Run a failover subcommand; returns what to print.
pub fn run(c: &Client, json: bool, cmd: &FailoverCmd) -> Result<String> {
    let op = |group: &str, op: &str, point: Option<&String>| -> Result<String> {
        let path = format!("/v1/groups/{group}/failover/{op}");
        let r = match point {
            Some(p) => {
                let req = PointRequest {
                    point: Some(p.clone()),
                };
                job::start(c, &path, &req, json)?
            }
            None => job::start(c, &path, &Empty {}, json)?,
        };
        if json {
            json_text(&r)
        } else {
            describe_result(&r)
        }
    };
    match cmd {
        FailoverCmd::Test { group, point } => {
            // `{"point": null}` asks for the latest point.
            let req = PointRequest {
                point: point.clone(),
            };
            let r = job::start(c, &format!("/v1/groups/{group}/failover/test"), &req, json)?;
            if json {
                json_text(&r)
            } else {
                describe_result(&r)
            }
        }
        FailoverCmd::Cleanup { group } => op(group, "cleanup", None),
        FailoverCmd::Planned { group } => op(group, "planned", None),
        FailoverCmd::Unplanned { group, point } => op(group, "unplanned", Some(point)),
        FailoverCmd::ChangePoint { group, point } => op(group, "change-point", Some(point)),
        FailoverCmd::Commit { group } => op(group, "commit", None),
        FailoverCmd::Configure { group, boot, clear } => {
            let req = ConfigureRequest {
                boot: if *clear { None } else { boot.clone() },
            };
            let s: GroupFailover =
                c.post(&format!("/v1/groups/{group}/failover/configure"), &req)?;
            if json {
                return json_text(&s);
            }
            or_json(describe(&Summary::of_state(&s)), &s)
        }
        FailoverCmd::Status { group: Some(g) } => {
            let show: FailoverShow = c.get(&format!("/v1/groups/{g}/failover"))?;
            if json {
                return json_text(&show);
            }
            or_json(describe(&Summary::of_state(&show.state)), &show)
        }
        // Every group's state: printed as JSON, tables or not (one summary per group would
        // need a group name on each line).
        FailoverCmd::Status { group: None } => {
            let list: Vec<GroupFailover> = c.get("/v1/failover")?;
            json_text(&list)
        }
    }
}

/// The summary of a job's result; its JSON when there is nothing to summarize.
pub fn describe_result(r: &Option<JobResult>) -> Result<String> {
    match r {
        Some(r) => or_json(describe(&Summary::of_result(r)), r),
        None => json_text(r),
    }
}

/// `text`, or the JSON of `v` when the text is empty.
fn or_json(text: String, v: &impl serde::Serialize) -> Result<String> {
    if text.is_empty() {
        json_text(v)
    } else {
        Ok(text)
    }
}

/// What a human summary shows, from a job's result or a group's failover state.
struct Summary<'a> {
    group: &'a str,
    test: Option<&'a DiskSet>,
    promotion: Option<&'a Promotion>,
    /// A test failover's disks that a cleanup discarded.
    cleaned: Option<&'a DiskSet>,
    reverse: Option<&'a Reverse>,
    warnings: &'a [String],
    /// The devices reverse replication made.
    devices: Option<&'a [PathBuf]>,
}

impl<'a> Summary<'a> {
    fn of_result(r: &'a JobResult) -> Summary<'a> {
        Summary {
            group: &r.group,
            test: r.test.as_ref(),
            promotion: r.promotion.as_ref(),
            cleaned: r.cleaned.as_ref(),
            reverse: r.reverse.as_ref(),
            warnings: r.warnings.as_deref().unwrap_or_default(),
            devices: r.devices.as_deref(),
        }
    }

    fn of_state(s: &'a GroupFailover) -> Summary<'a> {
        Summary {
            group: &s.group,
            test: s.test.as_ref(),
            promotion: s.promotion.as_ref(),
            cleaned: None,
            reverse: s.reverse.as_ref(),
            warnings: &[],
            devices: None,
        }
    }
}

/// A human summary of a failover: each disk set with its exports and devices, the promotion,
/// reverse replication, warnings, and the devices to boot from. Empty if there is none of it.
fn describe(s: &Summary<'_>) -> String {
    let mut out = String::new();
    let sets = [
        ("test", s.test),
        ("live", s.promotion.map(|p| &p.set)),
        ("discarded test", s.cleaned),
    ];
    for (what, set) in sets {
        let Some(set) = set else { continue };
        out += &format!(
            "{what} disks of {} at seq {} (point {}):\n",
            s.group, set.seq, set.point
        );
        for d in &set.disks {
            out += &format!(
                "  {}  nbd {}  loop {}\n",
                d.export,
                d.nbd_uri.as_deref().unwrap_or("-"),
                d.loop_device.as_deref().unwrap_or("-")
            );
        }
        if let Some(b) = &set.boot {
            out += &format!("  boot command pid {} (log {})\n", b.pid, b.log.display());
        }
    }
    if let Some(p) = s.promotion {
        out += &format!(
            "promoted ({}), generation {}, {}\n",
            wire_name(&p.kind),
            p.generation,
            if p.committed {
                "committed"
            } else {
                "not committed (`rewind failover commit`)"
            }
        );
    }
    if let Some(r) = s.reverse {
        out += &format!(
            "reverse replication to {} (agent pid {}, state {})\n",
            r.target,
            // As JSON prints it: a stopped agent has no pid.
            r.pid.map_or_else(|| "null".to_string(), |p| p.to_string()),
            r.state_dir.display()
        );
    }
    for w in s.warnings {
        out += &format!("warning: {w}\n");
    }
    if let Some(devs) = s.devices {
        out += "boot the workload from the protected devices:\n";
        for d in devs {
            out += &format!("  {}\n", d.display());
        }
    }
    out
}
