//! `rewind plan run|status|continue|cleanup`: recovery plans through the daemon, with each
//! step printed as it ends and the measured RTO at the end.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::api::plans::{Outcome, RunRequest, RunState, RunStatus};
use crate::api::Empty;
use crate::client::Client;

#[derive(Subcommand)]
pub enum PlanCmd {
    /// Run a plan file: boot groups in order, machines of a group in parallel.
    Run {
        plan: std::path::PathBuf,
        /// test (overlays; replication goes on), planned (drain, then promote) or unplanned.
        #[arg(long)]
        mode: String,
        /// The point for test and unplanned runs [default: latest].
        #[arg(long)]
        point: Option<String>,
        /// Return once started instead of following the run.
        #[arg(long)]
        detach: bool,
    },
    /// The current (or last) run: steps, machines, RTO.
    Status {
        /// With --site: the plan (the site keeps every plan's runs).
        name: Option<String>,
    },
    /// Go on past a manual step.
    Continue,
    /// Stop the run's machines and discard its test disks.
    Cleanup {
        /// With --site: the plan whose last run to clean up on every target it ran on.
        name: Option<String>,
    },
}

pub fn run(c: &Client, json_out: bool, cmd: &PlanCmd) -> Result<String> {
    let st: RunStatus = match cmd {
        PlanCmd::Run {
            plan,
            mode,
            point,
            detach,
        } => {
            let text = std::fs::read_to_string(plan)
                .with_context(|| format!("reading plan {}", plan.display()))?;
            let req = RunRequest {
                path: plan.clone(),
                text,
                mode: mode.clone(),
                point: point.clone(),
            };
            let st: RunStatus = c.post("/v1/plans/run", &req)?;
            if *detach {
                st
            } else {
                follow(c, json_out)?
            }
        }
        PlanCmd::Status { name: None } => c.get("/v1/plans/current")?,
        PlanCmd::Continue => {
            let _: RunStatus = c.post("/v1/plans/continue", &Empty {})?;
            follow(c, json_out)?
        }
        PlanCmd::Cleanup { name: None } => c.post("/v1/plans/cleanup", &Empty {})?,
        PlanCmd::Status { name: Some(_) } | PlanCmd::Cleanup { name: Some(_) } => {
            bail!("a plan name is for --site (a target runs one plan: give no name)")
        }
    };
    let out = if json_out {
        // In the run status's own field order, as this command has always printed it.
        serde_json::to_string_pretty(&st)? + "\n"
    } else {
        summary(&st)
    };
    let followed = matches!(cmd, PlanCmd::Run { detach: false, .. } | PlanCmd::Continue);
    if followed && st.state == RunState::Failed {
        print!("{out}");
        bail!(
            "recovery plan {} failed: {} (`rewind plan cleanup` stops what it started)",
            st.plan,
            st.error.as_deref().unwrap_or("see the steps above")
        );
    }
    Ok(out)
}

/// Print each step once it ends, until the run succeeds, fails, waits or is cleaned up.
fn follow(c: &Client, quiet: bool) -> Result<RunStatus> {
    let mut shown = 0usize;
    loop {
        let st: RunStatus = c.get("/v1/plans/current")?;
        while !quiet && shown < st.steps.len() && st.steps[shown].outcome != Outcome::Running {
            eprintln!("{}", step_line(&st, shown));
            shown += 1;
        }
        if st.state != RunState::Running {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn step_line(st: &RunStatus, i: usize) -> String {
    let s = &st.steps[i];
    let at = s
        .ended_ms
        .unwrap_or(s.started_ms)
        .saturating_sub(st.started_ms);
    let who = [s.boot_group.as_deref(), s.machine.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
    format!(
        "[+{:>6.1}s] {:<8} {:<20} {:?}: {}",
        at as f64 / 1000.0,
        format!("{:?}", s.kind).to_lowercase(),
        who,
        s.outcome,
        s.message
    )
}

fn summary(st: &RunStatus) -> String {
    let mut out = format!(
        "plan {} ({} mode{}): {:?}, {}/{} machines healthy\n",
        st.plan,
        st.mode,
        st.point
            .as_deref()
            .map(|p| format!(", point {p}"))
            .unwrap_or_default(),
        st.state,
        st.machines_healthy,
        st.machines_total
    );
    for m in &st.machines {
        out += &format!(
            "  {:<16} {:<10} group {:<12} {:?}  console {}\n",
            m.name,
            m.boot_group,
            m.group,
            m.state,
            m.console_log.display()
        );
    }
    if let Some(r) = st.rto_ms {
        out += &format!(
            "RTO: {:.1} s (start to every machine healthy)\n",
            r as f64 / 1000.0
        );
    }
    if st.state == RunState::Waiting {
        out += &format!(
            "waiting for a manual step: {}\nthen run `rewind plan continue`\n",
            st.manual.as_deref().unwrap_or("")
        );
    }
    out
}
