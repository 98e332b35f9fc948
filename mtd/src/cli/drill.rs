//! `rewind drill run|status|configure GROUP`: prove a group's points recoverable (a test
//! failover booted in isolation and probed: `crate::drill`), see its last drill and verified
//! point, set its probes.

use anyhow::Result;
use clap::Subcommand;

use super::job;
use super::table::{json_or, json_text};
use crate::api::drill::{DrillConfig, DrillConfigRequest, DrillRequest, DrillShow, Probe};
use crate::client::Client;
use crate::drill::config::DEFAULT_TIMEOUT_SECS;
use crate::names::parse_group;
use crate::store::points::format_ms;

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Run a drill now and wait for it: exits non-zero, with the failed probe's output, when
    /// the point does not prove recoverable.
    Run {
        #[arg(value_parser = parse_group)]
        group: String,
        /// The point (default: the newest app-consistent point, else the latest).
        #[arg(long)]
        point: Option<String>,
    },
    /// The group's drill configuration, last drill and last verified point.
    Status {
        #[arg(value_parser = parse_group)]
        group: String,
    },
    /// Set the group's probes (the boot command is `rewind failover configure --boot`).
    Configure {
        #[arg(value_parser = parse_group)]
        group: String,
        /// console=REGEX, command=SHELL (in the guest, over $REWIND_SERIAL), tcp=PORT, fs-check;
        /// repeat for several, run in this order.
        #[arg(long = "probe")]
        probes: Vec<Probe>,
        /// Each probe's limit, in seconds from the boot.
        #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
        /// Let the VM use the host's network (default: a network namespace of its own).
        #[arg(long)]
        network: bool,
        /// Remove the drill configuration.
        #[arg(long, conflicts_with_all = ["probes", "network"])]
        clear: bool,
    },
}

pub fn run(c: &Client, json: bool, cmd: &DrillCmd) -> Result<String> {
    match cmd {
        DrillCmd::Run { group, point } => {
            let req = DrillRequest {
                point: point.clone(),
            };
            job::start(c, &format!("/v1/groups/{group}/drill"), &req, json)?;
            let s: DrillShow = c.get(&format!("/v1/groups/{group}/drill"))?;
            json_or(json, &s, describe)
        }
        DrillCmd::Status { group } => {
            let s: DrillShow = c.get(&format!("/v1/groups/{group}/drill"))?;
            json_or(json, &s, describe)
        }
        DrillCmd::Configure {
            group,
            probes,
            timeout,
            network,
            clear,
        } => {
            let req = DrillConfigRequest {
                config: (!*clear).then(|| DrillConfig {
                    probes: probes.clone(),
                    timeout_secs: *timeout,
                    network: *network,
                }),
            };
            let s: DrillShow = c.post(&format!("/v1/groups/{group}/drill/config"), &req)?;
            if json {
                json_text(&s)
            } else {
                Ok(describe(&s))
            }
        }
    }
}

fn describe(s: &DrillShow) -> String {
    let mut out = format!("group {}: ", s.group);
    out += &match (&s.config, s.boot) {
        (_, false) => "no boot command: drills check each disk's file system".to_string(),
        (None, true) => "boot command, no probes: drills boot it and check file systems".into(),
        (Some(c), true) => format!(
            "probes {} (each within {} s), {}",
            c.probes
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            c.timeout_secs,
            if c.network {
                "with the host's network"
            } else {
                "isolated (no network)"
            }
        ),
    };
    out += &if s.every_secs > 0 {
        format!("; scheduled every {} s\n", s.every_secs)
    } else {
        "; not scheduled\n".into()
    };
    match &s.drills.verified {
        Some(v) => {
            out += &format!(
                "last verified point: seq {} ({}, {}), verified {}: {}\n  evidence {}\n",
                v.seq,
                v.point,
                v.point_time_ms.map_or("-".into(), format_ms),
                format_ms(v.verified_ms),
                v.summary,
                v.evidence.display()
            )
        }
        None => out += "no verified point yet\n",
    }
    if let Some(d) = &s.drills.last {
        out += &format!(
            "last drill {} ({}): {}\n",
            if d.ok { "PASSED" } else { "FAILED" },
            format_ms(d.ended_ms),
            d.summary()
        );
        if let Some(n) = &d.note {
            out += &format!("  note: {n}\n");
        }
        for p in &d.probes {
            out += &format!(
                "  {} {} ({} ms): {}\n",
                if p.ok { "ok  " } else { "FAIL" },
                p.probe,
                p.took_ms,
                p.output.lines().next().unwrap_or("")
            );
        }
        out += &format!("  evidence {}\n", d.evidence.display());
    }
    out
}
