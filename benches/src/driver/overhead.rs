//! `overhead` (agent/bench-overhead.sh): the agent's write overhead alone. fio on the protected
//! device (a loop device over the agent's FUSE file, replicating to a local `rewind-mtd`) against
//! the same fio on a plain loop device in direct-io mode over a file on the same filesystem, both
//! files fully allocated first. Each job runs RUNS times; prints medians and ratios. Its knobs
//! are the old script's environment variables, for comparing agent settings.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::settings::{make_workdir, Settings};
use super::stats::Series;
use super::{fio, progress, tools};

/// The old script's environment.
pub struct Options {
    /// `AGENT`, `MTD`: the binaries (built in release if either is missing).
    pub agent: Option<PathBuf>,
    pub mtd: Option<PathBuf>,
    /// `WORK_BASE`: where the scratch directory goes.
    pub work_base: PathBuf,
    /// `RUNS`: runs of each job.
    pub runs: usize,
    /// `RUNTIME`: seconds per fio run.
    pub runtime: u64,
    /// `SIZE`: both images, as fallocate and fio take it (`2G`).
    pub size: String,
    /// `AGENT_ARGS`: extra `rewind-agent run` flags, e.g. `--io-engine sync`.
    pub agent_args: String,
    /// `JOBS`: `rand`, `seq` or both.
    pub jobs: String,
    /// `PLAIN=0` skips the plain loop runs (their result counts as 1).
    pub plain: bool,
}

/// One fio job: its rw mode, block size, queue depth and the unit it reports.
struct Job {
    rw: &'static str,
    bs: &'static str,
    depth: u32,
    unit: &'static str,
}

fn job(name: &str) -> Result<Job> {
    Ok(match name {
        "rand" => Job {
            rw: "randwrite",
            bs: "4k",
            depth: 64,
            unit: "IOPS",
        },
        "seq" => Job {
            rw: "write",
            bs: "1M",
            depth: 32,
            unit: "MB/s",
        },
        _ => bail!("unknown job {name:?} in JOBS (rand, seq)"),
    })
}

fn note(msg: impl AsRef<str>) {
    progress::note(format!("# {}", msg.as_ref()));
}

pub fn run(settings: &Settings, o: &Options) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("bench-overhead.sh: needs root (loop devices, FUSE)");
    }
    for t in ["fio", "losetup"] {
        if !tools::on_path(t) {
            bail!("bench-overhead.sh: needs {t}");
        }
    }
    let (agent, mtd) = match (&o.agent, &o.mtd) {
        (Some(a), Some(m)) => (a.clone(), m.clone()),
        (a, m) => {
            if !tools::cargo(
                settings,
                &[
                    "build",
                    "--release",
                    "-p",
                    "rewind-agent",
                    "-p",
                    "rewind-mtd",
                ],
            )? {
                bail!("build failed");
            }
            (
                a.clone()
                    .unwrap_or_else(|| settings.release_bin("rewind-agent")),
                m.clone()
                    .unwrap_or_else(|| settings.release_bin("rewind-mtd")),
            )
        }
    };
    let work = make_workdir(&o.work_base, "rewind-overhead")?;

    // Real blocks in both files (writes into holes or unwritten extents measure ext4's allocator).
    note(format!(
        "writing two {} images in {}",
        o.size,
        work.display()
    ));
    for f in ["plain.img", "protected.img"] {
        let path = work.join(f);
        tools::output(
            Command::new("fallocate").args(["-l", &o.size]).arg(&path),
            "fallocate",
        )?;
        let mib = std::fs::metadata(&path)?.len() >> 20;
        tools::output(
            Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", path.display()))
                .args([
                    "bs=1M",
                    &format!("count={mib}"),
                    "oflag=direct",
                    "conv=notrunc",
                    "status=none",
                ]),
            "dd",
        )?;
    }
    let plain = tools::plain_loop(&work.join("plain.img"))?;

    let ready = work.join("mtd.ready");
    let mtd_log = work.join("mtd.log");
    let daemon = Command::new(&mtd)
        .arg("serve")
        .arg("--data-dir")
        .arg(work.join("mtd-data"))
        .arg("--unix")
        .arg(work.join("mtd.sock"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["--nbd-listen", "none", "--nbd-unix"])
        .arg(work.join("mtd-nbd.sock"))
        .arg("--control")
        .arg(work.join("mtd-control.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(tools::log_file(&mtd_log)?)
        .spawn()
        .context("starting rewind-mtd")?;
    cleanup::add_proc(daemon.id(), Stop::Term(Duration::from_secs(30)));
    if !tools::poll(600, Duration::from_millis(100), || ready.exists()) {
        bail!(
            "rewind-mtd did not start: {}",
            tools::tail_file(&mtd_log, 20)
        );
    }

    let state = work.join("state");
    std::fs::create_dir_all(&state)?;
    let mount = work.join("agent-mnt");
    let agent_log = work.join("agent.log");
    let mut agent = Command::new(&agent)
        .args(["run", "--group", "bench", "--disk"])
        .arg(format!("d0={}", work.join("protected.img").display()))
        .arg("--target")
        .arg(format!("unix:{}", work.join("mtd.sock").display()))
        .args(["--agent-name", "bench", "--state-dir"])
        .arg(&state)
        .arg("--mount-dir")
        .arg(&mount)
        .arg("--links-dir")
        .arg(work.join("links"))
        .args(o.agent_args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(tools::log_file(&agent_log)?)
        .spawn()
        .context("starting rewind-agent")?;
    cleanup::add_proc(agent.id(), Stop::Term(Duration::from_secs(60)));
    cleanup::add_mount(&mount);

    // Ready once the initial sync (it reads the zeros and sends nothing) is done.
    let status = || -> Value {
        std::fs::read(state.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let mut died = false;
    let synced = tools::poll(1200, Duration::from_millis(100), || {
        died = !matches!(agent.try_wait(), Ok(None));
        died || status()["sync"] == "done"
    });
    if died || !synced {
        bail!(
            "{}{}",
            if died { "" } else { "agent not ready\n" },
            tools::tail_file(&agent_log, 1000)
        );
    }
    let dev = status()["disks"][0]["device"]
        .as_str()
        .context("status.json: no disks[0].device")?
        .to_string();
    note(format!(
        "plain loop {plain}, protected {dev} (agent pid {}, rewind-mtd pid {})",
        agent.id(),
        daemon.id()
    ));

    for name in o.jobs.split_whitespace() {
        let j = job(name)?;
        let plain_result = if o.plain {
            median_of(o, &j, &plain, "plain")?
        } else {
            1
        };
        let protected = median_of(o, &j, &dev, "protected")?;
        let ratio = (protected as f64 / plain_result as f64 * 100.0).round() / 100.0;
        println!(
            "{} bs={} QD{}: plain loop {plain_result} {u}, protected {protected} {u}, ratio {ratio:?} (median of {})",
            j.rw, j.bs, j.depth, o.runs, u = j.unit
        );
    }
    Ok(())
}

/// Runs job `j` on `dev` RUNS times; the median (IOPS for random writes, MB/s for sequential).
fn median_of(o: &Options, j: &Job, dev: &str, which: &str) -> Result<u64> {
    let mut results = Series::fixed(0);
    for run in 1..=o.runs {
        let v = fio_once(o, j, dev)?;
        note(format!(
            "{} bs={} QD{} {which} run {run}: {v} {}",
            j.rw, j.bs, j.depth, j.unit
        ));
        results.push(v as f64);
    }
    Ok(results.median().unwrap_or(0.0) as u64)
}

fn fio_once(o: &Options, j: &Job, dev: &str) -> Result<u64> {
    let args = [
        "--name=r".to_string(),
        format!("--filename={dev}"),
        format!("--rw={}", j.rw),
        format!("--bs={}", j.bs),
        "--ioengine=libaio".into(),
        format!("--iodepth={}", j.depth),
        "--direct=1".into(),
        "--time_based".into(),
        format!("--runtime={}", o.runtime),
        format!("--size={}", o.size),
    ];
    let report = fio::run(&args, "fio")?;
    let v = if j.rw == "randwrite" {
        fio::field(&report, "write", "iops")?
    } else {
        fio::mbs(&report, "write")?
    };
    Ok(v.round() as u64)
}
