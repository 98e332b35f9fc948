//! `apply [SIZE]`: durable-apply throughput of `rewind-mtd` fed by `rewind-loadgen`, against fio
//! on the same filesystem, run by run interleaved; plus the daemon's CPU per GiB, ack latencies,
//! index bytes per extent and the load generator's own ceiling (the null target).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::mtd::{self, Daemon};
use super::report::{print_bars, Bar};
use super::settings::{whole_mib_size, Settings};
use super::stats::{fmt, ratio, ratio_text, sum_key, Series};
use super::tools::{self, Bins};
use super::{fio, progress};

/// The figures of one daemon workload over the runs.
struct Daemonrun {
    mbs: Series,
    p50: Series,
    p99: Series,
    cpu: Series,
    idx: Series,
}

impl Daemonrun {
    fn new() -> Daemonrun {
        Daemonrun {
            mbs: Series::raw(),
            p50: Series::raw(),
            p99: Series::raw(),
            cpu: Series::fixed(3),
            idx: Series::fixed(1),
        }
    }
}

pub fn run(settings: &Settings, size_arg: &str) -> Result<()> {
    let size = whole_mib_size(size_arg, 16)?;
    tools::need_tool("fio", "fio")?;
    let bins = tools::build_target_side(settings)?;
    let work = settings.make_workdir()?;
    let df = tools::df("source,fstype", &work)?;
    let df = df.split_whitespace().collect::<Vec<_>>().join(" ");
    progress::log(format!("scratch dir {} ({df})", work.display()));

    // Random payloads travel as stored zstd blocks (what zstd -1 makes of incompressible data)
    // so the load generator, which shares the two cores, costs the daemon as little as possible.
    let disk = format!("sda:{size}");
    let total = size.to_string();
    let seq = loadgen_args(
        &disk,
        "seq",
        "1MiB",
        &total,
        "random",
        &["--compression", "store"],
    );
    // Random 4 KiB: like fio, SIZE bytes or BENCH_RAND_SECONDS, whichever comes first.
    let duration = format!("{}s", settings.rand_seconds);
    let rand = loadgen_args(
        &disk,
        "random",
        "4KiB",
        &total,
        "random",
        &["--duration", &duration, "--compression", "store"],
    );
    let comp = loadgen_args(
        &disk,
        "seq",
        "1MiB",
        &total,
        "compressible",
        &["--threads", "2"],
    );

    progress::log("load generator ceiling (null target)");
    let null = [
        null_run(&bins, &work, &seq)?,
        null_run(&bins, &work, &rand)?,
        null_run(&bins, &work, &comp)?,
    ];
    let (mut fio_seq, mut fio_rand, mut fio_iops) = (Series::raw(), Series::raw(), Series::raw());
    let (mut s, mut r, mut c) = (Daemonrun::new(), Daemonrun::new(), Daemonrun::new());
    // Each run's ratios to that run's fio, for the spread of the bars.
    let (mut seq_ratio, mut rand_ratio) = (Series::fixed(2), Series::fixed(2));
    let runs = settings.runs;
    for run in 1..=runs {
        progress::log(format!("run {run}/{runs}: fio"));
        let (fs, fr, fi) = fio::apply_baseline(&work.join("fio.dat"), size, settings.rand_seconds)?;
        fio_seq.push(fs);
        fio_rand.push(fr);
        fio_iops.push(fi);
        progress::log(format!("run {run}/{runs}: rewind-mtd seq 1MiB"));
        let ours = mtd_run(&bins, &work, "seq1m", run, &seq, &mut s)?;
        seq_ratio.push_some(ratio(Some(ours), Some(fs)));
        progress::log(format!("run {run}/{runs}: rewind-mtd random 4KiB"));
        let ours = mtd_run(&bins, &work, "rand4k", run, &rand, &mut r)?;
        rand_ratio.push_some(ratio(Some(ours), Some(fr)));
        progress::log(format!(
            "run {run}/{runs}: rewind-mtd seq 1MiB compressible"
        ));
        mtd_run(&bins, &work, "comp1m", run, &comp, &mut c)?;
    }
    progress::finish();

    let (fs, fr) = (fio_seq.median(), fio_rand.median());
    let (seq_mbs, rand_mbs, comp_mbs) = (s.mbs.median(), r.mbs.median(), c.mbs.median());
    let idx = if s.idx.is_empty() && r.idx.is_empty() {
        "n/a".to_string()
    } else {
        format!(
            "{} (seq 1MiB), {} (rand 4KiB)",
            s.idx.median_text(),
            r.idx.median_text()
        )
    };
    let fstype = tools::df("fstype", &work)?;
    let f0 = |v| fmt(v, 0);
    let line =
        |a: &str, b: String, c: String, d: String| println!("{a:<44} {b:>12} {c:>12} {d:>8}");
    let daemon =
        |a: &str, b: String, c: String, d: String| println!("{a:<44} {b:>12} {c:>12} {d:>12}");
    println!();
    println!(
        "apply benchmark: SIZE={size_arg}, {runs} runs each (median), scratch on {}",
        fstype
    );
    line(
        "measurement",
        "MB/s".into(),
        "fio MB/s".into(),
        "ratio".into(),
    );
    line(
        "fio seq write 1MiB QD32 (io_uring, direct)",
        f0(fs),
        "".into(),
        "".into(),
    );
    let fio_rand_label = format!("fio rand write 4KiB QD64 ({} IOPS)", f0(fio_iops.median()));
    line(&fio_rand_label, f0(fr), "".into(), "".into());
    let vs = |v, base| format!("{}x", ratio_text(v, base));
    line(
        "mtd apply seq 1MiB, random (stored)",
        f0(seq_mbs),
        f0(fs),
        vs(seq_mbs, fs),
    );
    line(
        "mtd apply rand 4KiB, random (stored)",
        f0(rand_mbs),
        f0(fr),
        vs(rand_mbs, fr),
    );
    line(
        "mtd apply seq 1MiB, compressible (zstd -1)",
        f0(comp_mbs),
        f0(fs),
        vs(comp_mbs, fs),
    );
    println!();
    daemon(
        "daemon",
        "seq 1MiB".into(),
        "rand 4KiB".into(),
        "compressible".into(),
    );
    let [ns, nr, nc] = null.map(|n| f0(Some(n)));
    daemon("load generator ceiling, null target (MB/s)", ns, nr, nc);
    let all = [&s, &r, &c];
    let [a, b, d] = all.map(|x| x.cpu.median_text());
    daemon("CPU seconds per GiB applied", a, b, d);
    let [a, b, d] = all.map(|x| fmt(x.p50.median(), 2));
    daemon("ack latency p50 (ms)", a, b, d);
    let [a, b, d] = all.map(|x| fmt(x.p99.median(), 2));
    daemon("ack latency p99 (ms)", a, b, d);
    println!("index memory per extent (bytes): {idx}");
    let spread = |s: &Series| (!s.is_empty()).then(|| format!("{}x", s.spread_text()));
    print_bars(
        runs,
        &[
            Bar {
                name: "apply-seq-1m",
                value: vs(seq_mbs, fs),
                want: ">= 0.8",
                spread: spread(&seq_ratio),
            },
            Bar {
                name: "apply-rand-4k",
                value: vs(rand_mbs, fr),
                want: ">= 2",
                spread: spread(&rand_ratio),
            },
        ],
    );
    Ok(())
}

/// One fresh daemon, one load generator run (seed = run number); adds MB/s, CPU seconds per GiB,
/// ack latencies and index bytes per extent to `into`. Returns the run's MB/s.
fn mtd_run(
    bins: &Bins,
    work: &Path,
    name: &str,
    run: usize,
    workload: &[String],
    into: &mut Daemonrun,
) -> Result<f64> {
    let dir = work.join(format!("mtd-{name}-{run}"));
    let log = work.join(format!("mtd-{name}-{run}.log"));
    let daemon = mtd::start_tcp(bins, &dir, &log)?;
    let cpu0 = mtd::cpu_ticks(daemon.pid())?;
    let out = loadgen(bins, &daemon, run, workload)?;
    if !out.status.success() {
        bail!(
            "rewind-loadgen ({name} run {run}) failed: {}; daemon log: {}",
            tools::tail(&String::from_utf8_lossy(&out.stderr), 5),
            tools::tail_file(&log, 10)
        );
    }
    let out: Value = serde_json::from_slice(&out.stdout).context("rewind-loadgen --json")?;
    let cpu1 = mtd::cpu_ticks(daemon.pid())?;
    daemon.stop();
    let get = |k: &str| {
        out[k]
            .as_f64()
            .with_context(|| format!("rewind-loadgen --json: no {k}"))
    };
    let bytes = get("bytes")?;
    let mbs = into.mbs.push(get("mb_per_s")?);
    into.p50.push(get("ack_latency_p50_ms")?);
    into.p99.push(get("ack_latency_p99_ms")?);
    let cpu_s = (cpu1 - cpu0) as f64 / mtd::clock_ticks_per_second();
    into.cpu.push(cpu_s / (bytes / (1u64 << 30) as f64));
    // Index memory per extent, if the daemon's inspector reports it.
    let inspect = Command::new(&bins.mtd)
        .arg("inspect")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Some(o) = inspect.ok().filter(|o| o.status.success()) {
        if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
            if let (Some(ib), Some(ex)) = (sum_key(&v, "index_bytes"), sum_key(&v, "extents")) {
                if ex != 0.0 {
                    into.idx.push(ib / ex);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(mbs)
}

/// Runs `rewind-loadgen run --json` against a daemon (its one-line JSON summary on stdout).
fn loadgen(bins: &Bins, daemon: &Daemon, seed: usize, workload: &[String]) -> Result<Output> {
    Command::new(&bins.loadgen)
        .args(["run", "--connect", &format!("tcp:{}", daemon.addr)])
        .args(["--group", "bench", "--seed", &seed.to_string(), "--json"])
        .args(workload)
        .stdin(Stdio::null())
        .output()
        .context("running rewind-loadgen")
}

/// The load generator against a target that acks without storing anything: its own ceiling on
/// this machine (one run), MB/s.
fn null_run(bins: &Bins, work: &Path, workload: &[String]) -> Result<f64> {
    let ready = work.join("null.ready");
    let _ = std::fs::remove_file(&ready);
    let mut target = Command::new(&bins.null_target)
        .arg("127.0.0.1:0")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting null-target")?;
    cleanup::add_proc(target.id(), Stop::Kill);
    let mut addr = None;
    tools::poll(100, Duration::from_millis(50), || {
        addr = tools::first_line(&ready);
        addr.is_some()
    });
    let Some(addr) = addr else {
        bail!("null-target did not start");
    };
    let out = tools::output(
        Command::new(&bins.loadgen)
            .args(["run", "--connect", &format!("tcp:{addr}")])
            .args(["--group", "null", "--seed", "1", "--json"])
            .args(workload),
        "rewind-loadgen against null-target",
    )?;
    cleanup::terminate(target.id() as i32, mtd::GRACE);
    let _ = target.wait();
    cleanup::forget_proc(target.id());
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["mb_per_s"]
        .as_f64()
        .context("rewind-loadgen --json: no mb_per_s")
}

/// The load generator's arguments for one workload: disk, pattern, record size, total and
/// payload, then `extra`.
fn loadgen_args(
    disk: &str,
    pattern: &str,
    record_size: &str,
    total: &str,
    payload: &str,
    extra: &[&str],
) -> Vec<String> {
    let base = [
        "--disk",
        disk,
        "--pattern",
        pattern,
        "--record-size",
        record_size,
        "--total",
        total,
        "--payload",
        payload,
    ];
    base.iter().chain(extra).map(|a| a.to_string()).collect()
}
