//! `apply [SIZE]`: durable-apply throughput of `rewind-mtd` fed by `rewind-loadgen`, against fio
//! on the same filesystem, run by run interleaved; plus the daemon's CPU per GiB, ack latencies,
//! index bytes per extent, the load generator's own ceiling (the null target) and the latency of
//! random 4 KiB reads of a point whose data is in the journal.
//!
//! The random 4 KiB bar is measured against fio's *sequential* bandwidth: the journal turns
//! random writes into sequential ones, so the device's sequential bandwidth is its ceiling (the
//! ratio to fio's random writes is printed too). The compressible bar is against fio writing
//! bytes as compressible as the load generator's; the target keeps them zstd-compressed in its
//! journal (`--journal-compression`, on by default). The point-read bar reads the compressible
//! run's point back (its data in compressed frames); the raw point's p99 is printed too, and so
//! are two baselines: fio O_DIRECT on a file (the disk alone) and qemu-nbd serving a raw file to
//! the same fio NBD engine (the disk plus a plain NBD server and libnbd: what NBD itself costs).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::mtd::{self, Daemon};
use super::report::{print_bars, Bar};
use super::settings::{whole_mib_size, Settings};
use super::stats::{fmt, sum_key, Series, Versus};
use super::tools::{self, Bins};
use super::{fio, progress};

/// Seconds of random 4 KiB reads at QD1 per run (ours over NBD, fio's file alike).
const POINT_READ_SECONDS: u64 = 10;

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
    // The bars need medians of at least 5 runs: 5 unless BENCH_RUNS says otherwise.
    let settings = &Settings {
        runs: settings.runs_or(5),
        ..settings.clone()
    };
    let size = whole_mib_size(size_arg, 16)?;
    tools::need_tool("fio", "fio")?;
    tools::need_tool("qemu-nbd", "qemu-utils")?;
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
    // Compressible records travel framed: compressed as the journal stores them (each 32 KiB
    // of the pool once, before the run), stored by the target as they come. With
    // BENCH_APPLY_UNFRAMED set, as before framed records: one zstd frame per batch, which the
    // target decompresses and compresses again record by record.
    let comp = if std::env::var_os("BENCH_APPLY_UNFRAMED").is_some() {
        loadgen_args(
            &disk,
            "seq",
            "1MiB",
            &total,
            "compressible",
            &["--threads", "2"],
        )
    } else {
        loadgen_args(
            &disk,
            "seq",
            "1MiB",
            &total,
            "compressible-frames",
            &["--threads", "2", "--compression", "framed"],
        )
    };

    progress::log("load generator ceiling (null target)");
    let null = [
        null_run(&bins, &work, &seq)?,
        null_run(&bins, &work, &rand)?,
        null_run(&bins, &work, &comp)?,
    ];
    let mut fio_iops = Series::raw();
    let (mut s, mut r, mut c) = (Daemonrun::new(), Daemonrun::new(), Daemonrun::new());
    // Each bar's runs against that run's fio (the spread of the bars).
    let mut seq_bar = Versus::new(Series::raw(), Series::raw());
    let mut rand_bar = Versus::new(Series::raw(), Series::raw());
    let mut rand_vs_rand = Versus::new(Series::raw(), Series::raw());
    let mut comp_bar = Versus::new(Series::raw(), Series::raw());
    let mut read_p99 = Versus::new(Series::fixed(3), Series::fixed(3));
    // The same reads of the compressible run's point: its data sits in zstd journal frames.
    let mut comp_read_p99 = Series::fixed(3);
    // The same reads of a raw file qemu-nbd serves.
    let mut qemu_read_p99 = Series::fixed(3);
    let runs = settings.runs;
    for run in 1..=runs {
        progress::log(format!("run {run}/{runs}: fio"));
        let f = fio::apply_baseline(
            &work.join("fio.dat"),
            size,
            settings.rand_seconds,
            POINT_READ_SECONDS,
        )?;
        fio_iops.push(f.rand_iops);
        progress::log(format!("run {run}/{runs}: qemu-nbd random 4KiB reads"));
        qemu_read_p99.push(qemu_nbd_read_p99(&work, size)?);
        progress::log(format!("run {run}/{runs}: rewind-mtd seq 1MiB"));
        let (ours, _) = mtd_run(&bins, &work, "seq1m", run, &seq, &mut s, None)?;
        seq_bar.push(ours, f.seq_mbs);
        progress::log(format!(
            "run {run}/{runs}: rewind-mtd random 4KiB, then reading it back"
        ));
        let (ours, p99) = mtd_run(&bins, &work, "rand4k", run, &rand, &mut r, Some(size))?;
        rand_bar.push(ours, f.seq_mbs);
        rand_vs_rand.push(ours, f.rand_mbs);
        if let Some(p99) = p99 {
            read_p99.push(p99, f.read_p99_ms);
        }
        progress::log(format!(
            "run {run}/{runs}: rewind-mtd seq 1MiB compressible"
        ));
        let (ours, p99) = mtd_run(&bins, &work, "comp1m", run, &comp, &mut c, Some(size))?;
        comp_bar.push(ours, f.comp_mbs);
        if let Some(p99) = p99 {
            comp_read_p99.push(p99);
        }
    }
    progress::finish();

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
        |a: &str, b: String, c: String, d: String| println!("{a:<48} {b:>12} {c:>12} {d:>8}");
    let daemon =
        |a: &str, b: String, c: String, d: String| println!("{a:<48} {b:>12} {c:>12} {d:>12}");
    let row = |label: &str, v: &Versus| {
        line(
            label,
            f0(v.ours.median()),
            f0(v.theirs.median()),
            v.ratio_text(),
        )
    };
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
        f0(seq_bar.theirs.median()),
        "".into(),
        "".into(),
    );
    let fio_rand_label = format!("fio rand write 4KiB QD64 ({} IOPS)", f0(fio_iops.median()));
    line(
        &fio_rand_label,
        f0(rand_vs_rand.theirs.median()),
        "".into(),
        "".into(),
    );
    line(
        "fio seq write 1MiB QD32, 3:1 compressible",
        f0(comp_bar.theirs.median()),
        "".into(),
        "".into(),
    );
    row("mtd apply seq 1MiB, random (stored)", &seq_bar);
    row("mtd apply rand 4KiB (stored) vs fio seq 1MiB", &rand_bar);
    row(
        "mtd apply rand 4KiB (stored) vs fio rand 4KiB",
        &rand_vs_rand,
    );
    row(
        "mtd apply seq 1MiB, compressible (zstd -1) vs fio",
        &comp_bar,
    );
    println!(
        "random 4KiB reads QD1, p99 (ms): {} over NBD of the point in the journal (raw), {} of \
         the compressible point (zstd frames); baselines: {} fio O_DIRECT on its file, {} \
         qemu-nbd serving a raw file (fio's NBD engine, cold cache)",
        read_p99.ours.median_text(),
        comp_read_p99.median_text(),
        read_p99.theirs.median_text(),
        qemu_read_p99.median_text()
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
    let ms_spread = |s: &Series| (!s.is_empty()).then(|| s.spread_text());
    print_bars(
        runs,
        &[
            Bar {
                name: "apply-seq-1m",
                value: seq_bar.ratio_text(),
                want: ">= 0.95",
                spread: seq_bar.ratio_spread(),
            },
            Bar {
                name: "apply-rand-4k-vs-seq",
                value: rand_bar.ratio_text(),
                want: ">= 0.9",
                spread: rand_bar.ratio_spread(),
            },
            Bar {
                name: "apply-compressible",
                value: comp_bar.ratio_text(),
                want: ">= 1.5",
                spread: comp_bar.ratio_spread(),
            },
            // Issue 16: reads of a point whose data sits in compressed journal frames.
            Bar {
                name: "point-read-4k-p99-ms",
                value: comp_read_p99.median_text(),
                want: "< 1",
                spread: ms_spread(&comp_read_p99),
            },
        ],
    );
    Ok(())
}

/// One fresh daemon, one load generator run (seed = run number); adds MB/s, CPU seconds per GiB,
/// ack latencies and index bytes per extent to `into`. With `read_back` (the disk's size), then
/// random 4 KiB reads of the point written through the daemon's NBD export, cold caches.
/// Returns the run's MB/s and, with `read_back`, the reads' p99 in ms.
fn mtd_run(
    bins: &Bins,
    work: &Path,
    name: &str,
    run: usize,
    workload: &[String],
    into: &mut Daemonrun,
    read_back: Option<u64>,
) -> Result<(f64, Option<f64>)> {
    let dir = work.join(format!("mtd-{name}-{run}"));
    let log = work.join(format!("mtd-{name}-{run}.log"));
    let (daemon, nbd) = if read_back.is_some() {
        let (d, sock) = mtd::start_tcp_nbd(bins, &dir, &log)?;
        (d, Some(sock))
    } else {
        (mtd::start_tcp(bins, &dir, &log)?, None)
    };
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
    let mut p99 = None;
    if let (Some(size), Some(sock)) = (read_back, nbd) {
        // Retention keeps 24 h: every block the workload wrote is read from the journal (the
        // others read as zeroes). Cold caches: the reads come from the segment files on disk.
        mtd::drop_caches()?;
        let target = [
            "--ioengine=nbd".to_string(),
            format!("--uri=nbd+unix:///bench/sda?socket={}", sock.display()),
        ];
        p99 = Some(fio::randread_p99_ms(&target, size, POINT_READ_SECONDS)?);
    }
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
    Ok((mbs, p99))
}

/// The baseline of the point-read bar's NBD part: random 4 KiB reads at QD1 (fio's NBD engine, as
/// for the daemon) of a raw file of `size` random bytes that qemu-nbd serves from a cold page
/// cache, p99 in ms.
fn qemu_nbd_read_p99(work: &Path, size: u64) -> Result<f64> {
    let raw = work.join("qemu-nbd-read.raw");
    let sock = work.join("qemu-nbd-read.sock");
    let _ = std::fs::remove_file(&sock);
    let fill = [
        "--name=fill".to_string(),
        format!("--filename={}", raw.display()),
        "--ioengine=io_uring".into(),
        "--direct=1".into(),
        "--rw=write".into(),
        "--bs=1M".into(),
        "--iodepth=32".into(),
        format!("--size={size}"),
        "--end_fsync=1".into(),
    ];
    fio::run(&fill, "fio writing qemu-nbd's file")?;
    let mut qemu = Command::new("qemu-nbd")
        .args(["--read-only", "--format=raw", "--persistent"])
        .arg(format!("--socket={}", sock.display()))
        .arg(&raw)
        .stdin(Stdio::null())
        .spawn()
        .context("starting qemu-nbd")?;
    cleanup::add_proc(qemu.id(), Stop::Kill);
    let p99 = (|| {
        if !tools::poll(100, Duration::from_millis(50), || sock.exists()) {
            bail!("qemu-nbd did not start");
        }
        mtd::drop_caches()?;
        let target = [
            "--ioengine=nbd".to_string(),
            format!("--uri=nbd+unix:///?socket={}", sock.display()),
        ];
        fio::randread_p99_ms(&target, size, POINT_READ_SECONDS)
    })();
    cleanup::terminate(qemu.id() as i32, mtd::GRACE);
    let _ = qemu.wait();
    cleanup::forget_proc(qemu.id());
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&sock);
    p99
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
