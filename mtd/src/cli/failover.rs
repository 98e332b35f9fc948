//! `rewind failover ...`, `rewind reverse`, `rewind adopt` and `rewind job`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use super::job::follow;
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
pub fn run(c: &Client, json_out: bool, cmd: &FailoverCmd) -> Result<String> {
    let op = |path: String, body: Value| -> Result<Value> {
        let job = c.post(&path, body)?;
        follow(c, &job, json_out)
    };
    let v = match cmd {
        FailoverCmd::Test { group, point } => op(
            format!("/v1/groups/{group}/failover/test"),
            json!({ "point": point }),
        )?,
        FailoverCmd::Cleanup { group } => {
            op(format!("/v1/groups/{group}/failover/cleanup"), json!({}))?
        }
        FailoverCmd::Planned { group } => {
            op(format!("/v1/groups/{group}/failover/planned"), json!({}))?
        }
        FailoverCmd::Unplanned { group, point } => op(
            format!("/v1/groups/{group}/failover/unplanned"),
            json!({ "point": point }),
        )?,
        FailoverCmd::ChangePoint { group, point } => op(
            format!("/v1/groups/{group}/failover/change-point"),
            json!({ "point": point }),
        )?,
        FailoverCmd::Commit { group } => {
            op(format!("/v1/groups/{group}/failover/commit"), json!({}))?
        }
        FailoverCmd::Configure { group, boot, clear } => {
            let boot = if *clear { None } else { boot.clone() };
            c.post(
                &format!("/v1/groups/{group}/failover/configure"),
                json!({ "boot": boot }),
            )?
        }
        FailoverCmd::Status { group } => match group {
            Some(g) => c.get(&format!("/v1/groups/{g}/failover"))?,
            None => c.get("/v1/failover")?,
        },
    };
    if json_out {
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    Ok(describe(&v))
}

/// A human summary of a failover result or state: each disk set with its exports and devices.
pub fn describe(v: &Value) -> String {
    let mut out = String::new();
    let sets = [
        ("test", &v["test"]),
        ("live", &v["promotion"]["set"]),
        ("test", &v["state"]["test"]),
        ("live", &v["state"]["promotion"]["set"]),
        ("discarded test", &v["cleaned"]),
    ];
    for (what, set) in sets {
        if set.is_null() {
            continue;
        }
        out += &format!(
            "{what} disks of {} at seq {} (point {}):\n",
            v["group"]
                .as_str()
                .or(v["state"]["group"].as_str())
                .unwrap_or("?"),
            set["seq"],
            set["point"].as_str().unwrap_or("?")
        );
        for d in set["disks"].as_array().into_iter().flatten() {
            out += &format!(
                "  {}  nbd {}  loop {}\n",
                d["export"].as_str().unwrap_or("?"),
                d["nbd_uri"].as_str().unwrap_or("-"),
                d["loop_device"].as_str().unwrap_or("-")
            );
        }
        if let Some(b) = set["boot"].as_object() {
            out += &format!(
                "  boot command pid {} (log {})\n",
                b["pid"],
                b["log"].as_str().unwrap_or("?")
            );
        }
    }
    for p in [&v["promotion"], &v["state"]["promotion"]] {
        if !p.is_null() {
            out += &format!(
                "promoted ({}), generation {}, {}\n",
                p["kind"].as_str().unwrap_or("?"),
                p["generation"],
                if p["committed"] == true {
                    "committed"
                } else {
                    "not committed (`rewind failover commit`)"
                }
            );
        }
    }
    for r in [&v["reverse"], &v["state"]["reverse"]] {
        if !r.is_null() {
            out += &format!(
                "reverse replication to {} (agent pid {}, state {})\n",
                r["target"].as_str().unwrap_or("?"),
                r["pid"],
                r["state_dir"].as_str().unwrap_or("?")
            );
        }
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        out += &format!("warning: {}\n", w.as_str().unwrap_or("?"));
    }
    if let Some(devs) = v["devices"].as_array() {
        out += "boot the workload from the protected devices:\n";
        for d in devs {
            out += &format!("  {}\n", d.as_str().unwrap_or("?"));
        }
    }
    if out.is_empty() {
        out = serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    }
    out
}

/// `rewind reverse GROUP --to HOST:PORT`.
pub fn reverse(
    c: &Client,
    json_out: bool,
    group: &str,
    to: Option<&str>,
    stop: bool,
    body: Value,
) -> Result<String> {
    let v = if stop {
        let job = c.delete(&format!("/v1/groups/{group}/reverse"))?;
        follow(c, &job, json_out)?
    } else {
        let mut body = body;
        body["to"] = json!(to.ok_or_else(|| anyhow::anyhow!("give --to HOST:PORT (or --stop)"))?);
        let job = c.post(&format!("/v1/groups/{group}/reverse"), body)?;
        follow(c, &job, json_out)?
    };
    Ok(if json_out {
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        describe(&v)
    })
}

/// `rewind adopt GROUP (--disk NAME=PATH ... | --from-live)`.
pub fn adopt(
    c: &Client,
    json_out: bool,
    group: &str,
    agent: &str,
    disks: &[String],
    from_live: bool,
    retention: Option<&str>,
) -> Result<String> {
    let disks: Vec<String> = disks
        .iter()
        .map(|d| match d.split_once('=') {
            // The daemon opens the path: make it absolute here.
            Some((n, p)) => std::path::absolute(PathBuf::from(p))
                .map(|p| format!("{n}={}", p.display()))
                .unwrap_or_else(|_| d.clone()),
            None => d.clone(),
        })
        .collect();
    let job = c.post(
        &format!("/v1/groups/{group}/adopt"),
        json!({ "disks": disks, "from_live": from_live, "retention": retention, "agent": agent }),
    )?;
    let v = follow(c, &job, json_out)?;
    Ok(if json_out {
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        format!("group {group} adopted: the first agent compares block hashes and sends only what differs\n")
    })
}
