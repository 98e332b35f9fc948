//! `views [SIZE] [RECORDS]`: reading recovery points through NBD (nbdcopy against qemu-nbd on the
//! same bytes: merged, 10% and 50% of the disk in the journal) and through the FUSE tree + loop
//! (fio against a plain loop device over a raw file), `rewind-mtd dump` of a point whose journal
//! is SIZE bytes of random 4 KiB writes (against `cp` of the same raw image), and the time to
//! open a point and read its first block with RECORDS records in the journal.
//!
//! Every read run starts with cold caches (the page cache dropped before each of ours and each
//! baseline's), and the two alternate which goes first, run by run: whatever a run leaves warm
//! below the page cache (the host's cache of this VM's disk, a daemon's state) then favours
//! neither side over the runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;

use super::cleanup::{self, Stop};
use super::mtd::{self, drop_caches, Rewind, GRACE};
use super::report::{print_bars, Bar};
use super::settings::{whole_mib_size, Settings};
use super::stats::{fmt, jq_text, Series, Versus};
use super::tools::{self, Bins};
use super::{fio, progress};

struct Bench<'a> {
    settings: &'a Settings,
    bins: Bins,
    work: &'a Path,
    rw: Rewind,
    size: u64,
}

pub fn run(settings: &Settings, size_arg: &str, records: u64) -> Result<()> {
    // The bars need medians of at least 5 runs: 5 unless BENCH_RUNS says otherwise.
    let settings = &Settings {
        runs: settings.runs_or(5),
        ..settings.clone()
    };
    let size = whole_mib_size(size_arg, 16)?;
    tools::need_tool("fio", "fio")?;
    tools::need_tool("nbdcopy", "libnbd-bin")?;
    tools::need_tool("qemu-nbd", "qemu-utils")?;
    let bins = tools::build_target_side(settings)?;
    let work = settings.make_workdir()?;
    let views = work.join("views");
    cleanup::add_mount(&views);
    progress::log(format!("scratch dir {}", work.display()));
    let b = Bench {
        settings,
        rw: Rewind::new(&bins, &work),
        bins,
        work: &work,
        size,
    };

    // A daemon whose new groups keep 1 s of history, so the first full write merges into the base.
    let daemon = mtd::start_views(&b.bins, &work, &views, "1s", None)?;
    progress::log(format!(
        "writing {size_arg} and waiting for it to merge into the base image"
    ));
    b.write(size)?;
    let merged = tools::poll(
        600,
        Duration::from_millis(200),
        || matches!(b.rw.group_sum("bench", "journal_bytes"), Ok(Some(j)) if j == 0.0),
    );
    if !merged {
        bail!("the journal did not merge");
    }
    b.rw.run(&["retention", "bench", "24h"])?;

    progress::log("nbdcopy, latest right after merge");
    let merged = b.nbd_vs_qemu("merged")?;

    progress::log(
        "sequential read through FUSE + loop against a loop device over the same raw file",
    );
    let looped = b.fuse_loop_vs_loop()?;

    progress::log("10% of the disk in the journal");
    b.write(size + size / 10)?;
    let journal10 = b.nbd_vs_qemu("journal10")?;
    progress::log("50% of the disk in the journal");
    b.write(size + size / 2)?;
    let journal50 = b.nbd_vs_qemu("journal50")?;

    // The daemon is stopped by the cleanup on exit, before its view tree is unmounted. New
    // groups keep 24 h from here on: their journals stay unmerged.
    let _daemon = mtd::start_views(&b.bins, &work, &views, "24h", Some(daemon))?;
    progress::log(format!(
        "dump of a point with {size_arg} of random 4KiB writes in the journal, against cp"
    ));
    let dumped = b.dump_vs_cp()?;

    progress::log(format!(
        "first block of a point with {records} records in the journal"
    ));
    let first = b.first_block(&views, records)?;
    let extents = jq_text(
        b.rw.group_sum("fb", "extents")?
            .map(serde_json::Value::from)
            .as_ref(),
    );
    progress::finish();

    let runs = settings.runs;
    let row = |a: &str, b: String, c: String, d: String| println!("{a:<52} {b:>12} {c:>12} {d:>8}");
    let nbd_row = |label: &str, v: &Versus| {
        row(
            label,
            v.ours.median_text(),
            v.theirs.median_text(),
            v.ratio_text(),
        )
    };
    println!();
    println!("views benchmark: SIZE={size_arg}, {runs} runs each (median)");
    row(
        "measurement",
        "rewind".into(),
        "baseline".into(),
        "ratio".into(),
    );
    nbd_row("nbdcopy latest after merge (MB/s) vs qemu-nbd", &merged);
    nbd_row(
        "nbdcopy latest, 10% in journal (MB/s) vs qemu-nbd",
        &journal10,
    );
    nbd_row(
        "nbdcopy latest, 50% in journal (MB/s) vs qemu-nbd",
        &journal50,
    );
    row(
        "seq read 1MiB, FUSE+loop vs loop over raw (MB/s)",
        fmt(looped.ours.median(), 1),
        fmt(looped.theirs.median(), 1),
        looped.ratio_text(),
    );
    row(
        "dump, SIZE of random 4KiB in journal, vs cp (MB/s)",
        fmt(dumped.ours.median(), 1),
        fmt(dumped.theirs.median(), 1),
        dumped.ratio_text(),
    );
    println!(
        "first block of a random point, {extents} extents in the journal: {} ms (median of {})",
        first.median_text(),
        runs * 3
    );
    print_bars(
        runs,
        &[
            Bar {
                name: "nbdcopy-merged",
                value: merged.ratio_text(),
                want: ">= 1.0",
                spread: merged.ratio_spread(),
            },
            Bar {
                name: "nbdcopy-journal-10",
                value: journal10.ratio_text(),
                want: ">= 1.0",
                spread: journal10.ratio_spread(),
            },
            Bar {
                name: "nbdcopy-journal-50",
                value: journal50.ratio_text(),
                want: ">= 1.0",
                spread: journal50.ratio_spread(),
            },
            Bar {
                name: "fuse-loop-seq-read",
                value: looped.ratio_text(),
                want: ">= 0.8",
                spread: looped.ratio_spread(),
            },
            Bar {
                name: "dump-rand-journal",
                value: dumped.ratio_text(),
                want: ">= 0.5",
                spread: dumped.ratio_spread(),
            },
            Bar {
                name: "first-block-ms",
                value: first.median_text(),
                want: "< 50",
                spread: Some(first.spread_text()),
            },
        ],
    );
    Ok(())
}

impl Bench<'_> {
    /// Sequential 1 MiB records to group bench, disk sda, up to `total` bytes written in all.
    fn write(&self, total: u64) -> Result<()> {
        self.stored_records("bench", self.size, "seq", "1MiB", total)
    }

    /// `total` bytes of random 4 KiB records to disk sda of `group`, `disk_size` bytes.
    fn random_4k(&self, group: &str, disk_size: u64, total: u64) -> Result<()> {
        self.stored_records(group, disk_size, "random", "4KiB", total)
    }

    /// `total` bytes of incompressible records (sent stored) of `record_size` in `pattern`
    /// order to disk sda of `group`, `disk_size` bytes.
    fn stored_records(
        &self,
        group: &str,
        disk_size: u64,
        pattern: &str,
        record_size: &str,
        total: u64,
    ) -> Result<()> {
        self.loadgen(&[
            "--group",
            group,
            "--disk",
            &format!("sda:{disk_size}"),
            "--pattern",
            pattern,
            "--record-size",
            record_size,
            "--payload",
            "random",
            "--compression",
            "store",
            "--total",
            &total.to_string(),
        ])
    }

    fn loadgen(&self, args: &[&str]) -> Result<()> {
        let sock = format!("unix:{}", self.work.join("agents.sock").display());
        let out = Command::new(&self.bins.loadgen)
            .args(["run", "--connect", &sock])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .context("running rewind-loadgen")?;
        if !out.status.success() {
            bail!(
                "loadgen: {}",
                tools::tail(&String::from_utf8_lossy(&out.stderr), 5)
            );
        }
        Ok(())
    }

    /// Dumps bench/sda as of latest to `work/raw.img`.
    fn dump_raw(&self) -> Result<PathBuf> {
        let raw = self.work.join("raw.img");
        self.dump("bench", &raw)?;
        Ok(raw)
    }

    /// `rewind-mtd dump` of `group`/sda as of latest to `out`.
    fn dump(&self, group: &str, out: &Path) -> Result<()> {
        tools::output(
            Command::new(&self.bins.mtd)
                .arg("dump")
                .arg("--data-dir")
                .arg(self.work.join("data"))
                .args(["--group", group, "--disk", "sda", "--at", "latest", "-o"])
                .arg(out),
            &format!("rewind-mtd dump of {group}/sda"),
        )?;
        Ok(())
    }

    /// `rewind-mtd dump` of a point whose journal holds SIZE bytes of random 4 KiB writes over a
    /// disk of SIZE (group dr, not merged) against `cp` of a raw image of the same bytes, each
    /// into a new file and synced (dump syncs its output), RUNS times, alternating, cold caches:
    /// MB/s of the disk's size.
    fn dump_vs_cp(&self) -> Result<Versus> {
        self.random_4k("dr", self.size, self.size)?;
        let raw = self.work.join("dr.img");
        self.dump("dr", &raw)?;
        let out = self.work.join("dr-out.img");
        let timed = |copy: &dyn Fn() -> Result<()>| -> Result<f64> {
            let _ = std::fs::remove_file(&out);
            drop_caches()?;
            let t0 = Instant::now();
            copy()?;
            Ok(self.size as f64 / tools::since(t0) / 1e6)
        };
        let ours = || self.dump("dr", &out);
        let theirs = || -> Result<()> {
            tools::output(Command::new("cp").arg(&raw).arg(&out), "cp")?;
            std::fs::File::open(&out)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("fsync {}", out.display()))
        };
        let mut v = Versus::new(Series::fixed(1), Series::fixed(1));
        for run in 1..=self.settings.runs {
            let (o, t) = alternate(run, || timed(&ours), || timed(&theirs))?;
            let (o, t) = v.push(o, t);
            progress::log(format!(
                "dump run {run}: rewind-mtd dump {o:.1} MB/s, cp {t:.1} MB/s"
            ));
        }
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&raw);
        Ok(v)
    }

    /// nbdcopy of bench/sda (latest) against qemu-nbd serving a dump of the same point, RUNS
    /// times each, alternating.
    fn nbd_vs_qemu(&self, label: &str) -> Result<Versus> {
        let raw = self.dump_raw()?;
        let qsock = self.work.join("qemu-nbd.sock");
        let _ = std::fs::remove_file(&qsock);
        let mut qemu = Command::new("qemu-nbd")
            .args(["--read-only", "--format=raw", "--persistent", "--shared=16"])
            .arg("--aio=io_uring")
            .arg(format!("--socket={}", qsock.display()))
            .arg(&raw)
            .stdin(Stdio::null())
            .spawn()
            .context("starting qemu-nbd")?;
        cleanup::add_proc(qemu.id(), Stop::Kill);
        if !tools::poll(100, Duration::from_millis(50), || is_socket(&qsock)) {
            bail!("qemu-nbd did not start");
        }
        let ours_uri = format!(
            "nbd+unix:///bench/sda?socket={}",
            self.work.join("nbd.sock").display()
        );
        let theirs_uri = format!("nbd+unix:///?socket={}", qsock.display());
        let mut v = Versus::new(Series::fixed(1), Series::fixed(1));
        for run in 1..=self.settings.runs {
            let (ours, theirs) = alternate(
                run,
                || cold(|| self.nbdcopy_mbs(&ours_uri)),
                || cold(|| self.nbdcopy_mbs(&theirs_uri)),
            )?;
            let (o, t) = v.push(ours, theirs);
            progress::log(format!(
                "{label} run {run}: rewind {o:.1} MB/s, qemu-nbd {t:.1} MB/s"
            ));
        }
        cleanup::terminate(qemu.id() as i32, GRACE);
        let _ = qemu.wait();
        cleanup::forget_proc(qemu.id());
        let _ = std::fs::remove_file(&raw);
        Ok(v)
    }

    /// Reads a whole export into `null:`; MB/s.
    fn nbdcopy_mbs(&self, uri: &str) -> Result<f64> {
        let t0 = Instant::now();
        let ok = Command::new("nbdcopy")
            .args([uri, "null:"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("nbdcopy {uri} failed");
        }
        Ok(self.size as f64 / tools::since(t0) / 1e6)
    }

    /// fio sequential reads of bench/sda attached as a loop device over its FUSE file, against
    /// a plain loop device over a dump of the same bytes, RUNS times, alternating, cold caches.
    ///
    /// Both read their backing bytes through the page cache with the same readahead: the daemon
    /// reads its base image and journal with buffered preads, so the baseline's loop device runs
    /// without direct I/O and reads its raw file buffered too (fio reads both devices O_DIRECT,
    /// so neither device's own cache plays). With a direct-I/O baseline against the daemon's
    /// buffered reads the ratio swung from 0.69x in one run to 2.5x in another: it compared
    /// readahead against none as much as the view against a file.
    fn fuse_loop_vs_loop(&self) -> Result<Versus> {
        let raw = self.dump_raw()?;
        let dev = self.rw.run(&["attach", "bench/sda"])?;
        let dev = dev.lines().next().unwrap_or("").trim().to_string();
        cleanup::add_loop(&dev);
        let base = tools::stdout_of(
            Command::new("losetup")
                .args(["--find", "--show", "--read-only", "--direct-io=off"])
                .arg(&raw),
            "losetup",
        )?;
        let base = base.trim().to_string();
        cleanup::add_loop(&base);
        let mut v = Versus::new(Series::raw(), Series::raw());
        for run in 1..=self.settings.runs {
            let (ours, theirs) = alternate(
                run,
                || cold(|| fio::read_mbs(&dev, self.size)),
                || cold(|| fio::read_mbs(&base, self.size)),
            )?;
            v.push(ours, theirs);
            progress::log(format!(
                "loop run {run}: FUSE+loop {ours} MB/s, plain loop {theirs} MB/s"
            ));
        }
        self.rw.run(&["detach", &dev])?;
        cleanup::forget_loop(&dev);
        tools::detach_loop(&base)?;
        let _ = std::fs::remove_file(&raw);
        Ok(v)
    }

    /// Writes `records` random 4 KiB records to group fb (a disk of `records / 8` blocks), then
    /// times opening a random point of it and reading its first block, 3 * RUNS times; ms.
    fn first_block(&self, views: &Path, records: u64) -> Result<Series> {
        let fb_size = records * 4096 / 8;
        self.random_4k("fb", fb_size, records * 4096)?;
        let mut ms = Series::fixed(2);
        let mut rng = rand::thread_rng();
        for _ in 0..self.settings.runs * 3 {
            let s = rng.gen_range(1..=records);
            drop_caches()?;
            let img = views.join(format!("fb/sda/at/seq:{s}.img"));
            let t0 = Instant::now();
            let ok = Command::new("dd")
                .arg(format!("if={}", img.display()))
                .args([
                    "of=/dev/null",
                    "bs=4096",
                    "count=1",
                    "iflag=direct",
                    "status=none",
                ])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|st| st.success());
            if !ok {
                bail!("reading the first block of fb/sda at seq:{s} failed");
            }
            ms.push(tools::since(t0) * 1000.0);
        }
        Ok(ms)
    }
}

/// Runs `measure` from cold caches (the page cache dropped first).
fn cold(measure: impl FnOnce() -> Result<f64>) -> Result<f64> {
    drop_caches()?;
    measure()
}

/// Run `run` of ours against the baseline: ours first in odd runs, the baseline first in even
/// ones (see the module's comment). Returns (ours, theirs).
fn alternate(
    run: usize,
    ours: impl FnOnce() -> Result<f64>,
    theirs: impl FnOnce() -> Result<f64>,
) -> Result<(f64, f64)> {
    if run % 2 == 1 {
        let o = ours()?;
        Ok((o, theirs()?))
    } else {
        let t = theirs()?;
        Ok((ours()?, t))
    }
}

/// Whether `path` is a Unix socket.
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
