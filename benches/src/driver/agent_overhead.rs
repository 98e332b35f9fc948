//! The agent's overhead on the workload: fio on protected devices against a plain loop device,
//! direct IO, interleaved run by run (each protected run right after its own baseline run).
//!
//! Configurations, each its own agent and image, all started before the first run:
//! - `capture`: capture only, FUSE over io_uring. Its target does not exist, so nothing is
//!   replicated; with no spool, the memory queue fills and the agent drops to bitmap mode (the
//!   status says when), which is capture without a stream.
//! - `capture-devfuse`: the same on the `/dev/fuse` transport (fuser), to compare transports.
//! - `null`: replication to a null target ([`super::nulltarget`]) that acknowledges every batch
//!   and applies nothing: the agent's whole cost, none of the target's.
//! - `real`: replication to `rewind-mtd` on the same host.
//!
//! Random 4 KiB reads run against the real configuration's device.
//!
//! Every image is allocated (written with zeros) before its agent starts, as a disk is, and
//! every run starts with all replicating agents caught up, so that no agent's catching up or
//! the target's apply runs beside another configuration's measurement.
//!
//! Each configuration's baseline is a plain loop device over that configuration's own image,
//! not over an image of its own: on a virtual disk, where a file lies moves its random-write
//! speed by 20-25% (the first image made was the fastest), which is more than some of the
//! margins measured. The baseline's writes bypass the agent, so the replica of that image no
//! longer matches it afterwards; nothing here reads the replica.

use anyhow::Result;

use super::agentproc::Agent;
use super::fio;
use super::nulltarget::NullTarget;
use super::progress;
use super::stats::{ratio, Series};
use super::tools::{self, Bins};
use std::path::Path;

/// One configuration's results: per mode (seq, rand) protected MB/s, baseline MB/s, ratio.
pub struct ConfigResult {
    pub key: &'static str,
    pub what: &'static str,
    pub modes: [(Series, Series, Series); 2],
    /// What bitmap mode and the spool did, from the status after each run.
    pub notes: Vec<String>,
}

pub struct Overhead {
    pub configs: Vec<ConfigResult>,
    /// Random 4 KiB reads: protected, baseline, ratio.
    pub reads: (Series, Series, Series),
}

struct Config {
    key: &'static str,
    what: &'static str,
    agent: Agent,
    /// Whether it can catch up (has a target): each of its runs starts caught up.
    replicates: bool,
}

/// Runs `runs` rounds; `real` is the agent replicating to the real target.
pub fn run(
    bins: &Bins,
    work: &Path,
    real: &Agent,
    size: u64,
    fio_seconds: u64,
    runs: usize,
) -> Result<Overhead> {
    let null = NullTarget::start(&work.join("null.sock"))?;
    let nowhere = format!("unix:{}", work.join("nowhere.sock").display());
    let start = |name: &str, target: &str, extra: &[&str]| -> Result<Agent> {
        let img = work.join(format!("{name}.img"));
        tools::allocated_image(&img, size)?;
        Agent::start_to(bins, work, name, &img, target, extra)
    };
    let capture = start("capture", &nowhere, &["--spool-mib", "0"])?;
    let devfuse = start(
        "capturedevfuse",
        &nowhere,
        &["--spool-mib", "0", "--fuse-transport", "dev-fuse"],
    )?;
    let nulla = start("null", &null.target(), &[])?;
    nulla.wait_synced(300)?;
    let configs = [
        (
            capture,
            "capture",
            "capture only (io_uring), no target",
            false,
        ),
        (
            devfuse,
            "capture-devfuse",
            "capture only (/dev/fuse), no target",
            false,
        ),
        (nulla, "null", "replication to a null target", true),
    ]
    .map(|(agent, key, what, replicates)| Config {
        key,
        what,
        agent,
        replicates,
    });
    // The baselines: a plain loop device over each configuration's image, the real one last.
    let plains = configs
        .iter()
        .map(|c| &c.agent)
        .chain([real])
        .map(|a| tools::plain_loop(&a.img))
        .collect::<Result<Vec<_>>>()?;
    let mut results: Vec<ConfigResult> = configs
        .iter()
        .map(|c| (c.key, c.what))
        .chain([("real", "replication to rewind-mtd (same host)")])
        .map(|(key, what)| ConfigResult {
            key,
            what,
            modes: [0, 1].map(|_| (Series::raw(), Series::raw(), Series::fixed(2))),
            notes: Vec::new(),
        })
        .collect();
    let mut reads = (Series::raw(), Series::raw(), Series::fixed(2));
    for run in 1..=runs {
        for (m, mode) in ["seq", "rand"].iter().enumerate() {
            let rand = *mode == "rand";
            for (i, r) in results.iter_mut().enumerate() {
                let agent = match configs.get(i) {
                    Some(c) => &c.agent,
                    None => real,
                };
                // Each run starts quiet: every replicating agent caught up (a resync after
                // bitmap mode, or the target applying another agent's backlog, would otherwise
                // slow the run down).
                all_synced(&configs, real)?;
                let theirs = fio::write_mbs(&plains[i], rand, fio_seconds, size)?;
                all_synced(&configs, real)?;
                let ours = fio::write_mbs(&agent.dev, rand, fio_seconds, size)?;
                let (o, t, q) = &mut r.modes[m];
                o.push(ours);
                t.push(theirs);
                q.push_some(ratio(Some(ours), Some(theirs)));
                let note = state_note(agent);
                progress::log(format!(
                    "{mode} run {run} {}: protected {ours} MB/s, plain loop {theirs} MB/s; {note}",
                    r.key
                ));
                r.notes.push(format!("{mode} run {run}: {note}"));
            }
        }
        all_synced(&configs, real)?;
        let theirs = fio::randread_mbs(&plains[configs.len()], fio_seconds, size)?;
        all_synced(&configs, real)?;
        let ours = fio::randread_mbs(&real.dev, fio_seconds, size)?;
        reads.0.push(ours);
        reads.1.push(theirs);
        reads.2.push_some(ratio(Some(ours), Some(theirs)));
        progress::log(format!(
            "rand read run {run}: protected {ours} MB/s, plain loop {theirs} MB/s"
        ));
    }
    for dev in &plains {
        tools::detach_loop(dev)?;
    }
    for c in configs {
        c.agent.stop();
    }
    Ok(Overhead {
        configs: results,
        reads,
    })
}

/// Waits until every agent that has a target has caught up.
fn all_synced(configs: &[Config], real: &Agent) -> Result<()> {
    for c in configs.iter().filter(|c| c.replicates) {
        c.agent.wait_synced(600)?;
    }
    real.wait_synced(600)
}

/// What bitmap mode and the spool are doing, from the agent's status.
fn state_note(agent: &Agent) -> String {
    format!(
        "bitmap mode {}, dropped writes {}, spooled {} B, queued {} B",
        agent.status_text("bitmap_mode"),
        agent.status_text("dropped_writes"),
        agent.status_text("spooled_bytes"),
        agent.status_text("queued_bytes"),
    )
}
