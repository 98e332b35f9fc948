//! `agent [SIZE]`: the source agent. Initial sync of a half-full ext4 image against `zstd -1
//! -T1` on the same bytes; write and read overhead in three configurations (capture only, null
//! target, real target: [`super::agent_overhead`]) against a plain loop device, direct I/O,
//! interleaved; replication lag under 50 MB/s of writes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::agentproc::Agent;
use super::cleanup;
use super::mtd::{self, drop_caches};
use super::report::{print_bars, Bar};
use super::settings::{to_bytes, Settings};
use super::stats::{fmt, ratio_text, Series};
use super::tools::{self, Bins};
use super::{agent_overhead, progress};

/// Seconds of each overhead fio run (`AGENT_FIO_SECONDS`) and of each lag run
/// (`AGENT_LAG_SECONDS`).
pub struct Durations {
    pub fio_seconds: u64,
    pub lag_seconds: u64,
}

/// Free space the run needs in the scratch directory, as a multiple of SIZE.
const FREE_TIMES_SIZE: u64 = 25;

pub fn run(settings: &Settings, size_arg: &str, durations: &Durations) -> Result<()> {
    let size = to_bytes(size_arg)?;
    if size < 64 << 20 {
        bail!("SIZE must be at least 64MiB");
    }
    // Images, spools, the target's bases and a journal that keeps every overhead run (a short
    // retention would have the target merging during the runs). A 1 GiB run of 5 rounds filled
    // more than 12 times SIZE, and a full disk there stalls the runs: ask for 25 times SIZE.
    let fs = nix::sys::statvfs::statvfs(&settings.tmp_base)
        .with_context(|| format!("statvfs {}", settings.tmp_base.display()))?;
    let free_kb = fs.blocks_available() as u64 * fs.fragment_size() as u64 / 1024;
    if free_kb * 1024 < FREE_TIMES_SIZE * size {
        bail!(
            "bench agent {size_arg} needs about {} GiB free in {}; {} GiB are",
            (FREE_TIMES_SIZE * size) >> 30,
            settings.tmp_base.display(),
            free_kb >> 20
        );
    }
    tools::need_tool("fio", "fio")?;
    tools::need_tool("zstd", "zstd")?;
    let bins = tools::build_agent_side(settings)?;
    let work = settings.make_workdir()?;
    mtd::start_unix(
        &bins,
        &work,
        &["--nbd-listen", "none", "--nbd-unix", "none"],
        30,
    )?;

    progress::log(format!(
        "initial sync of a {size_arg} ext4 image, half full, against zstd -1 -T1 on the same bytes"
    ));
    let img = work.join("sync.img");
    fill_half(&img, &work.join("fill"), size)?;
    drop_caches()?;
    let t0 = Instant::now();
    tools::output(
        Command::new("zstd")
            .args(["-1", "-T1", "-c"])
            .arg(&img)
            .stdout(Stdio::null()),
        "zstd",
    )?;
    let zstd_mbs = mbs(size, t0);
    // The bar compares like with like: every batch at level 1 (--fixed-level). By default the
    // agent compresses only while the link is the bottleneck, which a local target never is.
    let sync_mbs = timed_sync(&bins, &work, "sync", &img, &["--fixed-level"], size)?;
    let sync_default_mbs = timed_sync(&bins, &work, "syncdefault", &img, &[], size)?;
    progress::log(format!("initial sync {sync_mbs:.1} MB/s of disk at level 1 ({sync_default_mbs:.1} MB/s with the default adaptive level), zstd -1 -T1 {zstd_mbs:.1} MB/s"));
    std::fs::remove_file(&img)?;

    progress::log(
        "overhead: fio on protected devices (capture only, null target, real target) against a \
         plain loop device (direct-io), interleaved",
    );
    tools::allocated_image(&work.join("prot.img"), size)?;
    let agent = Agent::start(&bins, &work, "prot", &work.join("prot.img"), &[])?;
    agent.wait_synced(120)?;
    let runs = settings.runs;
    let over = agent_overhead::run(&bins, &work, &agent, size, durations.fio_seconds, runs)?;
    let dropped = agent.status_text("dropped_writes");
    progress::log(format!(
        "writes the overhead runs left to bitmap mode (memory and spool full): {dropped}"
    ));

    progress::log("replication lag under 50 MB/s of writes (the agent's own figures: each ack's oldest record, last 10 s)");
    let (mut p50, mut p99) = (Series::raw(), Series::raw());
    for run in 1..=runs {
        agent.wait_synced(300)?;
        lag_load(&agent.dev, durations.lag_seconds, size)?;
        // The status is rewritten every 200 ms; read one written after fio ended.
        std::thread::sleep(Duration::from_millis(300));
        let st = agent.status();
        let (a, b) = (st["lag_ms_p50"].as_f64(), st["lag_ms_p99"].as_f64());
        p50.push_some(a);
        p99.push_some(b);
        progress::log(format!(
            "lag run {run}: p50 {} ms, p99 {} ms, bitmap mode: {}",
            p50.text(a),
            p99.text(b),
            agent.status_text("bitmap_mode")
        ));
    }
    agent.stop();
    progress::finish();

    let row = |a: &str, b: String, c: String, d: String| println!("{a:<60} {b:>10} {c:>10} {d:>7}");
    println!();
    println!("agent benchmark: SIZE={size_arg}, {runs} runs each (median)");
    row(
        "measurement",
        "agent".into(),
        "baseline".into(),
        "ratio".into(),
    );
    for c in &over.configs {
        for (label, (o, t, r)) in [
            ("seq write 1MiB QD32 (MB/s)", &c.modes[0]),
            ("rand write 4KiB QD64 (MB/s)", &c.modes[1]),
        ] {
            row(
                &format!("{}: {label}", c.key),
                fmt(o.median(), 1),
                fmt(t.median(), 1),
                format!("{}x", r.median_text()),
            );
        }
    }
    let (ro, rt, rr) = &over.reads;
    row(
        "real: rand read 4KiB QD64 (MB/s)",
        fmt(ro.median(), 1),
        fmt(rt.median(), 1),
        format!("{}x", rr.median_text()),
    );
    let (s, sd, z) = (Some(sync_mbs), Some(sync_default_mbs), Some(zstd_mbs));
    let vs = |a| format!("{}x", ratio_text(a, z));
    row(
        "initial sync at level 1, half-full ext4 (MB/s) vs zstd -1 -T1",
        fmt(s, 1),
        fmt(z, 1),
        vs(s),
    );
    row(
        "initial sync, default adaptive level (MB/s) vs zstd -1 -T1",
        fmt(sd, 1),
        fmt(z, 1),
        vs(sd),
    );
    println!("replication lag at 50 MB/s: p50 {} ms, p99 {} ms (median of {runs} runs; the agent measures each ack's oldest record)", p50.median_text(), p99.median_text());
    println!("writes dropped to bitmap mode during the overhead runs (real target): {dropped}");
    for c in &over.configs {
        println!(
            "{} ({}): bitmap mode and spool after each run:",
            c.key, c.what
        );
        for n in &c.notes {
            println!("  {n}");
        }
    }
    let spread = |s: &Series, unit: &str| Some(format!("{}{unit}", s.spread_text()));
    let ratio_bar = |name: &'static str, s: &Series, want: &'static str| Bar {
        name,
        value: format!("{}x", s.median_text()),
        want,
        spread: spread(s, "x"),
    };
    let cfg = |key: &str, m: usize| {
        over.configs
            .iter()
            .find(|c| c.key == key)
            .map(|c| c.modes[m].2.clone())
            .unwrap_or_else(Series::raw)
    };
    print_bars(
        runs,
        &[
            ratio_bar("agent-capture-seq-write", &cfg("capture", 0), ">= 0.9"),
            ratio_bar("agent-capture-rand-write-4k", &cfg("capture", 1), ">= 0.7"),
            ratio_bar("agent-null-seq-write", &cfg("null", 0), ">= 0.8"),
            ratio_bar("agent-null-rand-write-4k", &cfg("null", 1), ">= 0.6"),
            ratio_bar("agent-seq-write", &cfg("real", 0), ">= 0.8"),
            ratio_bar("agent-rand-write-4k", &cfg("real", 1), ">= 0.5"),
            ratio_bar("agent-rand-read-4k", rr, ">= 0.8"),
            Bar {
                name: "agent-lag-p99-ms",
                value: p99.median_text(),
                want: "< 1000",
                spread: spread(&p99, ""),
            },
            Bar {
                name: "agent-initial-sync",
                value: vs(s),
                want: ">= 0.7",
                spread: None,
            },
        ],
    );
    Ok(())
}

/// MB/s of `size` bytes since `t0`, with one decimal.
fn mbs(size: u64, t0: Instant) -> f64 {
    super::stats::round(size as f64 / tools::since(t0) / 1e6, 1)
}

/// A fresh ext4 image of `size` bytes filled to about half with real file bytes (a tar of
/// /usr/lib, cut at half the disk), as compressible as a system disk.
fn fill_half(img: &Path, mnt: &Path, size: u64) -> Result<()> {
    File::create(img)?.set_len(size)?;
    tools::output(
        Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img),
        "mkfs.ext4",
    )?;
    std::fs::create_dir_all(mnt)?;
    tools::output(
        Command::new("mount").args(["-o", "loop"]).arg(img).arg(mnt),
        "mount",
    )?;
    cleanup::add_mount(mnt);
    let mut tar = Command::new("tar")
        .args(["-cf", "-", "-C", "/usr/lib", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running tar")?;
    let mut out = File::create(mnt.join("usr-lib.tar"))?;
    let copied = std::io::copy(
        &mut tar.stdout.take().context("tar's output")?.take(size / 2),
        &mut out,
    );
    out.flush()?;
    drop(out);
    // Like `head -c`: stop reading and let tar go (it may still be writing).
    let _ = tar.kill();
    let _ = tar.wait();
    copied.context("copying tar's output")?;
    progress::log(format!("filled to {}", tools::df("pcent", mnt)?));
    tools::output(Command::new("umount").arg(mnt), "umount")?;
    Ok(())
}

/// Starts an agent on `img` and times it until its initial sync is done and acknowledged; MB/s
/// of disk (one decimal).
fn timed_sync(
    bins: &Bins,
    work: &Path,
    name: &str,
    img: &Path,
    extra: &[&str],
    size: u64,
) -> Result<f64> {
    drop_caches()?;
    let t0 = Instant::now();
    let agent = Agent::start(bins, work, name, img, extra)?;
    agent.wait_synced(600)?;
    let took = mbs(size, t0);
    agent.stop();
    Ok(took)
}

/// 64 KiB random writes at 50 MB/s, QD8, for `seconds`.
fn lag_load(dev: &str, seconds: u64, size: u64) -> Result<()> {
    tools::output(
        Command::new("fio")
            .args([
                "--name=lag",
                &format!("--filename={dev}"),
                "--ioengine=libaio",
            ])
            .args([
                "--direct=1",
                "--rw=randwrite",
                "--bs=64k",
                "--iodepth=8",
                "--rate=50m",
            ])
            .args([
                "--time_based",
                &format!("--runtime={seconds}"),
                &format!("--size={size}"),
            ])
            .stdout(Stdio::null()),
        "fio",
    )?;
    Ok(())
}
