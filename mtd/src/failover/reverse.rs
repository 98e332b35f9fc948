//! Reverse replication: after a committed failover, an agent at this site protects the live
//! disks and replicates them to a `rewind-mtd` at another site (the original one, which adopted
//! the old source disks: only blocks that differ are sent).
//!
//! The agent is the ordinary `rewind-agent`, run by this daemon in its own process group: its
//! backing disks are the live disks' loop devices, and the workload (the VM) must write through
//! its capture devices (`LINKS_DIR/GROUP/DISK`) from then on. It announces the generation the
//! promotion gave the group, so the other site's copy carries it on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::disks;
use super::state::Reverse;
use super::{FailoverError, Failovers};
use crate::jobs::{JobInfo, JobResult};
use crate::refused::Refused;
use rewind_formats::agent_status::Status;
use rewind_formats::AGENT_STATUS_FILE;
use rewind_linux::clock::now_ms;

/// How long an agent may take to stop cleanly (it waits for the target's acks first).
pub(super) const STOP_GRACE: Duration = Duration::from_secs(40);
/// How long the agent may take to put up its capture devices.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReverseRequest {
    /// The other site's agent listener: `tcp:HOST:PORT`, `HOST:PORT` or `unix:PATH`.
    pub to: String,
    /// The agent's name there [default: rewind-reverse-GROUP].
    #[serde(default)]
    pub agent_name: Option<String>,
    /// TLS files for the agent (`rewind-mtd ca` layout at the other site's CA).
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    /// Plain TCP to a loopback address (tests).
    #[serde(default)]
    pub insecure: bool,
    /// Where the protected devices appear [default: /dev/rewind].
    #[serde(default)]
    pub links_dir: Option<PathBuf>,
}

/// The agent binary: beside this one (a build or an install puts them together), else on PATH.
fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("REWIND_AGENT_BIN") {
        return p.into();
    }
    std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("rewind-agent"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "rewind-agent".into())
}

impl Failovers {
    pub fn reverse(
        self: &Arc<Self>,
        group: &str,
        req: ReverseRequest,
    ) -> Result<JobInfo, FailoverError> {
        self.check_group(group)?;
        let s = self.get(group);
        let Some(p) = &s.promotion else {
            return Err(Refused::Conflict(format!(
                "group {group} is not failed over to this site: reverse replication protects live disks (`rewind failover planned|unplanned {group}` first)"
            ))
            .into());
        };
        if !p.committed {
            return Err(Refused::Conflict(format!(
                "commit the failover first (`rewind failover commit {group}`): reverse replication protects the committed live disks"
            ))
            .into());
        }
        if let Some(r) = &s.reverse {
            return Err(Refused::Conflict(format!(
                "group {group} is already replicating in reverse to {} (agent pid {:?})",
                r.target, r.pid
            ))
            .into());
        }
        if p.set.disks.iter().any(|d| d.loop_device.is_none()) {
            return Err(Refused::Conflict(
                "reverse replication needs the live disks' loop devices: start rewind-mtd with --views DIR".into(),
            )
            .into());
        }
        if p.set
            .boot
            .as_ref()
            .is_some_and(|b| self.boots.running(b.pid))
        {
            return Err(Refused::Conflict(format!(
                "group {group}'s boot command is running on the live disks directly; stop it first: after reverse, boot from the protected devices (LINKS_DIR/{group}/DISK) so every write is replicated"
            ))
            .into());
        }
        disks::check_unused(self, &p.set).map_err(|e| Refused::Conflict(format!("{e:#}")))?;
        if let Some(a) = &req.agent_name {
            crate::names::check(rewind_formats::NameKind::Agent, a)?;
        }
        let target = if req.to.starts_with("tcp:") || req.to.starts_with("unix:") {
            req.to.clone()
        } else {
            format!("tcp:{}", req.to)
        };
        // One state dir per generation: the agent of an earlier reverse (fenced at failback, its
        // spool and acked seq from another stream) never lends its state to a new one.
        let state_dir = self.dir.join(format!("{group}.reverse-g{}", p.generation));
        if state_dir.exists() {
            return Err(Refused::Conflict(format!(
                "{} exists: reverse replication already ran at generation {} (`rewind reverse {group} --stop` removes it)",
                state_dir.display(),
                p.generation
            ))
            .into());
        }
        let mut extra = Vec::new();
        if let Some(t) = &req.tls_dir {
            extra.push("--tls-dir".to_string());
            extra.push(t.display().to_string());
        }
        if req.insecure {
            extra.push("--insecure".to_string());
        }
        let mut r = Reverse {
            target,
            agent_name: req
                .agent_name
                .clone()
                .unwrap_or_else(|| format!("rewind-reverse-{group}")),
            links_dir: req
                .links_dir
                .clone()
                .unwrap_or_else(|| "/dev/rewind".into()),
            state_dir,
            extra_args: extra,
            generation: p.generation,
            pid: None,
            pid_started: None,
            started_ms: now_ms(),
        };
        let me = self.clone();
        let g = group.to_string();
        Ok(self.jobs.spawn("reverse", group, move |job| {
            job.progress(10.0, format!("starting the agent towards {}", r.target));
            crate::store::files::create_dir_durable(&r.state_dir)?;
            agent_only(&me, &g, true);
            let pid = match spawn_agent(&me, &g, &r) {
                Ok(pid) => pid,
                Err(e) => {
                    agent_only(&me, &g, false);
                    return Err(e);
                }
            };
            r.pid = Some(pid);
            r.pid_started = rewind_linux::process::start_time(pid);
            let mut s = me.get(&g);
            s.reverse = Some(r.clone());
            me.put(s)?;
            job.progress(50.0, "waiting for the protected devices");
            match wait_links(&me, &g, &r, pid) {
                Ok(links) => Ok(JobResult {
                    reverse: Some(r),
                    devices: Some(links),
                    ..JobResult::of(g)
                }),
                Err(e) => {
                    // Undone, so that a retry starts clean.
                    me.boots.stop_within(pid, STOP_GRACE);
                    agent_only(&me, &g, false);
                    let mut s = me.get(&g);
                    s.reverse = None;
                    me.put(s)?;
                    let _ = std::fs::remove_dir_all(&r.state_dir);
                    Err(e)
                }
            }
        })?)
    }

    /// Stop reverse replication (the agent drains what it holds first).
    pub fn reverse_stop(self: &Arc<Self>, group: &str) -> Result<JobInfo, FailoverError> {
        self.check_group(group)?;
        if self.get(group).reverse.is_none() {
            return Err(
                Refused::Conflict(format!("group {group} is not replicating in reverse")).into(),
            );
        }
        let me = self.clone();
        let g = group.to_string();
        Ok(self.jobs.spawn("reverse-stop", group, move |job| {
            let mut s = me.get(&g);
            let r = s.reverse.take().context("reverse vanished")?;
            job.progress(10.0, "stopping the reverse agent");
            if let Some(pid) = r.pid {
                me.boots.stop_within(pid, STOP_GRACE);
            }
            me.put(s)?;
            agent_only(&me, &g, false);
            remove_state_dir(&r);
            Ok(JobResult {
                stopped: Some(r),
                ..JobResult::of(g)
            })
        })?)
    }

    /// The reverse agent's `status.json`, if it wrote one.
    pub fn reverse_status(&self, group: &str) -> Option<Status> {
        let r = self.get(group).reverse?;
        let b = std::fs::read(r.state_dir.join(AGENT_STATUS_FILE)).ok()?;
        serde_json::from_slice(&b).ok()
    }
}

/// Start the reverse agent for a group's live disks; returns its pid.
pub fn spawn_agent(f: &Failovers, group: &str, r: &Reverse) -> Result<u32> {
    let p = f
        .get(group)
        .promotion
        .context("reverse replication without a promotion")?;
    let mut cmd = Command::new(agent_binary());
    cmd.arg("run")
        .arg("--group")
        .arg(group)
        .arg("--target")
        .arg(&r.target)
        .arg("--state-dir")
        .arg(&r.state_dir)
        .arg("--links-dir")
        .arg(&r.links_dir)
        .arg("--mount-dir")
        .arg(r.state_dir.join("capture"))
        .arg("--agent-name")
        .arg(&r.agent_name)
        .arg("--generation")
        .arg(r.generation.to_string())
        .args(&r.extra_args);
    for d in &p.set.disks {
        let dev = d
            .loop_device
            .as_deref()
            .with_context(|| format!("{} has no loop device", d.export))?;
        cmd.arg("--disk").arg(format!("{}={dev}", d.disk));
    }
    // Durable in its parent: the reverse agent's dirty-region map lives in it, and a power cut
    // of the target site must not take it away.
    crate::store::files::create_dir_durable(&r.state_dir)?;
    let pid = f.boots.spawn(cmd, &r.state_dir.join("agent.log"))?;
    tracing::info!(group, pid, target = %r.target, "reverse replication agent started");
    Ok(pid)
}

/// While reverse replication runs, NBD clients get the live disks read-only: every write must
/// go through the agent (the loop devices under it), or it would never reach the other site.
pub(super) fn agent_only(f: &Failovers, group: &str, on: bool) {
    let Some(p) = f.get(group).promotion else {
        return;
    };
    for d in &p.set.disks {
        if let Ok(o) = f.exports.overlays.get(&d.overlay) {
            crate::views::exports::set_nbd_read_only(&o, on);
        }
    }
}

/// A stopped reverse agent's state (spool, dirty map, acked seq) is of no use to another one.
pub(super) fn remove_state_dir(r: &Reverse) {
    if let Err(e) = std::fs::remove_dir_all(&r.state_dir) {
        tracing::warn!(dir = %r.state_dir.display(), error = %e, "cannot remove the reverse agent's state");
    }
}

/// Stop a reverse agent at daemon shutdown.
pub fn stop_agent(f: &Failovers, pid: u32) {
    f.boots.stop_within(pid, STOP_GRACE);
}

/// Wait for the agent's capture devices; fail with its log if it exits first.
fn wait_links(f: &Failovers, group: &str, r: &Reverse, pid: u32) -> Result<Vec<PathBuf>> {
    let p = f.get(group).promotion.context("promotion vanished")?;
    let links: Vec<PathBuf> = p
        .set
        .disks
        .iter()
        .map(|d| r.links_dir.join(group).join(&d.disk))
        .collect();
    let t0 = Instant::now();
    loop {
        if links.iter().all(|l| l.exists()) {
            return Ok(links);
        }
        if !f.boots.running(pid) {
            bail!(
                "the reverse agent exited: {}",
                log_tail(&r.state_dir.join("agent.log"))
            );
        }
        if t0.elapsed() > START_TIMEOUT {
            bail!(
                "the reverse agent's devices did not appear within {START_TIMEOUT:?}: {}",
                log_tail(&r.state_dir.join("agent.log"))
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
