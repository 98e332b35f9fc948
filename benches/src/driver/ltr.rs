//! `ltr [SIZE]`: long-term retention against a `file://` store (and moto's S3 server, for
//! information, when `moto_server` is installed).
//!
//! - `ltr-upload-mbps`: archive throughput of a full SIZE image (every chunk read, hashed,
//!   compressed and stored: half of each 8 KiB is random bytes, half text, so the compressor
//!   works) from the job's start to its end, against `cp` + fsync of the same image file on the
//!   same file system.
//! - `ltr-point-open-s`: `rewind mount` of a long-term point (older than the journal window)
//!   with a cold chunk cache (the daemon restarted) and a cold page cache, until a file of it
//!   has been read and checked.
//! - `ltr-dedup-ratio`: 30 daily points of a SIZE disk with 5% daily churn, 30 full copies'
//!   bytes over the bytes the points store (their manifests and the chunks they name, as
//!   stored: compressed). Churn: writes of mixed sizes (4 KiB to 1 MiB, as file systems write
//!   files and metadata) at random offsets, 5% of the disk a day. Printed for information: the
//!   same with uniform random 4 KiB writes, the worst case for 64 KiB chunks.
//!
//! The daemon runs with the hidden `--ltr-test-hour 100ms`: a "day" lasts 2.4 s.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::mtd::{drop_caches, start_unix, Rewind, GRACE};
use super::progress;
use super::report::{print_bars, Bar};
use super::settings::{whole_mib_size, Settings};
use super::stats::Series;
use super::tools::{self, Bins};

const HOUR_MS: u64 = 100;
const DAY_MS: u64 = 24 * HOUR_MS;
const DAYS: usize = 30;
/// The tier the upload runs archive with (see `run`).
const UPLOAD_TIER: &str = r#""ltr_daily_weeks":1"#;

struct Bench<'a> {
    bins: &'a Bins,
    work: PathBuf,
    rw: Rewind,
    store: String,
}

pub fn run(settings: &Settings, size_arg: &str) -> Result<()> {
    let size = whole_mib_size(size_arg, 16)?;
    tools::need_tool("mkfs.ext4", "e2fsprogs")?;
    tools::need_tool("curl", "curl")?;
    let bins = tools::build_target_side(settings)?;
    let work = settings.make_workdir()?;
    let runs = settings.runs.max(5);
    let store_dir = work.join("store");
    let b = Bench {
        bins: &bins,
        rw: Rewind::new(&bins, &work),
        store: format!("file://{}", store_dir.display()),
        work: work.clone(),
    };
    let mut daemon = b.start()?;

    progress::log(format!("archiving a full {size_arg} image, {runs} runs"));
    let (mut up, mut cp) = (Series::fixed(1), Series::fixed(1));
    for r in 0..runs {
        let img = work.join("up.img");
        write_mixed_image(&img, size, 100 + r as u64)?;
        let t0 = Instant::now();
        std::fs::copy(&img, work.join("copy.img"))?;
        std::fs::File::open(work.join("copy.img"))?.sync_all()?;
        let copy_s = t0.elapsed().as_secs_f64();
        std::fs::remove_file(work.join("copy.img"))?;
        let group = format!("up{r}");
        b.push(&group, &img, None)?;
        // One "day" (2.4 s) holds the whole push: the archive job stores one point, the
        // image. (An hourly tier's 100 ms periods would cut the push into several points.)
        b.policy(&group, 3600, UPLOAD_TIER)?;
        let secs = b.archive_secs(&group)?;
        let (u, c) = (up.push(mb(size) / secs), cp.push(mb(size) / copy_s));
        progress::log(format!("run {r}: archive {u} MB/s, cp {c} MB/s"));
    }

    progress::log("a long-term point mounted with cold caches");
    let img = work.join("fs.img");
    let probe = make_fs_image(&img, size, &work.join("mnt-src"))?;
    b.push("open", &img, None)?;
    // The image as pushed whole: a test "hour" is 100 ms, so the push spans several, and the
    // kept points of the earlier ones are the image half written (no file system to mount).
    let seq = b.rw.json(&["points", "open"])?["newest"]["seq"]
        .as_u64()
        .context("no newest point after the push")?;
    b.policy("open", 3, r#""ltr_hourly_days":1"#)?;
    b.archive_secs("open")?;
    if !tools::poll(600, Duration::from_millis(100), || {
        b.long_term("open").is_ok_and(|lt| lt.contains(&seq))
    }) {
        bail!("the pushed image's point seq {seq} was never archived");
    }
    // One more write (a block past the file system's last use, in the image's last 4 KiB), so
    // that the point is no longer the newest and the merger can fold it.
    let img2 = work.join("fs2.img");
    std::fs::copy(&img, &img2)?;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&img2)?;
        f.write_all_at(&[0x5a; 4096], size - 4096)?;
    }
    b.push("open", &img2, Some(&img))?;
    // Wait until the journal no longer holds it: the mount reads the object store.
    if !tools::poll(600, Duration::from_millis(100), || {
        b.rw.json(&["points", "open"])
            .map(|p| p["horizon_seq"].as_u64().unwrap_or(0) > seq)
            .unwrap_or(false)
    }) {
        bail!("the horizon never passed the long-term point");
    }
    let mnt = work.join("mnt-lt");
    std::fs::create_dir_all(&mnt)?;
    cleanup::add_mount(&mnt);
    let mut open = Series::fixed(3);
    for r in 0..runs {
        // A restart empties the chunk cache.
        cleanup::terminate(daemon.id() as i32, GRACE);
        cleanup::forget_proc(daemon.id());
        let _ = daemon.wait();
        daemon = b.start()?;
        drop_caches()?;
        let t0 = Instant::now();
        b.rw.run(&[
            "mount",
            &format!("open/d0@seq:{seq}"),
            &mnt.to_string_lossy(),
        ])?;
        let got = std::fs::read(mnt.join("probe.bin"))?;
        let s = t0.elapsed().as_secs_f64();
        if got != probe {
            bail!("the mounted long-term point's probe.bin differs");
        }
        b.rw.run(&["umount", &mnt.to_string_lossy()])?;
        progress::log(format!("run {r}: {:.3} s", open.push(s)));
    }

    progress::log(format!(
        "{DAYS} daily points with 5% daily churn (a day is {DAY_MS} ms)"
    ));
    let (mixed, uniform) = b.dedup(size)?;

    let moto = if tools::on_path("moto_server") {
        progress::log("archiving to moto's S3 server, for information");
        cleanup::terminate(daemon.id() as i32, GRACE);
        cleanup::forget_proc(daemon.id());
        Some(s3_upload(&bins, &work, size)?)
    } else {
        progress::log("moto_server not installed: no S3 figure");
        None
    };
    progress::finish();

    println!("{:<58} {:>10} {:>16}", "", "median", "min-max");
    println!(
        "{:<58} {:>10} {:>16}",
        "archive a full image to file:// (MB/s)",
        up.median_text(),
        up.spread_text()
    );
    println!(
        "{:<58} {:>10} {:>16}",
        "  baseline: cp + fsync of the image file (MB/s)",
        cp.median_text(),
        cp.spread_text()
    );
    if let Some(m) = &moto {
        println!(
            "{:<58} {:>10} {:>16}",
            "archive a full image to moto S3 (MB/s, information)",
            m.median_text(),
            m.spread_text()
        );
    }
    println!(
        "{:<58} {:>10} {:>16}",
        "mount a long-term point, cold caches (s)",
        open.median_text(),
        open.spread_text()
    );
    println!(
        "{:<58} {:>10}",
        "dedup, mixed-size churn: 30 copies / stored",
        format!("{mixed:.2}")
    );
    println!(
        "{:<58} {:>10}",
        "dedup, uniform 4 KiB churn (information)",
        format!("{uniform:.2}")
    );
    print_bars(
        runs,
        &[
            Bar {
                name: "ltr-dedup-ratio",
                value: format!("{mixed:.2}"),
                want: ">= 5",
                spread: None,
            },
            Bar {
                name: "ltr-point-open-s",
                value: open.median_text(),
                want: "< 2",
                spread: Some(open.spread_text()),
            },
            Bar {
                name: "ltr-upload-mbps",
                value: up.median_text(),
                want: ">= 200",
                spread: Some(up.spread_text()),
            },
        ],
    );
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl Bench<'_> {
    fn start(&self) -> Result<std::process::Child> {
        let views = self.work.join("views");
        cleanup::add_mount(&views);
        start_unix(
            self.bins,
            &self.work,
            &[
                "--nbd-listen",
                "none",
                "--nbd-unix",
                &self.work.join("nbd.sock").to_string_lossy(),
                "--views",
                &views.to_string_lossy(),
                "--seal-after",
                "1s",
                "--merge-interval",
                "200ms",
                "--ltr-store",
                &self.store,
                "--ltr-interval",
                "100ms",
                "--ltr-test-hour",
                &format!("{HOUR_MS}ms"),
            ],
            60,
        )
    }

    /// Send `img` as disk d0 of `group` (the changes since `since`, if given).
    fn push(&self, group: &str, img: &Path, since: Option<&Path>) -> Result<()> {
        let sock = format!("unix:{}", self.work.join("agents.sock").display());
        let mut c = Command::new(&self.bins.loadgen);
        c.args([
            "image",
            "--connect",
            &sock,
            "--group",
            group,
            "--disk",
            "d0",
            "--file",
        ])
        .arg(img);
        if let Some(s) = since {
            c.arg("--since").arg(s);
        }
        let out = c
            .stdin(Stdio::null())
            .output()
            .context("rewind-loadgen image")?;
        if !out.status.success() {
            bail!(
                "rewind-loadgen image: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn policy(&self, group: &str, retention_secs: u64, tiers: &str) -> Result<()> {
        let body = format!(
            r#"{{"name":"bench","version":1,"rpo_target_secs":60,"retention_secs":{retention_secs},"level":1,{tiers}}}"#
        );
        let out = Command::new("curl")
            .args([
                "-sSf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ])
            .arg("--unix-socket")
            .arg(self.work.join("control.sock"))
            .arg(format!("http://localhost/v1/groups/{group}/policy"))
            .output()?;
        if !out.status.success() {
            bail!(
                "setting the policy of {group}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn long_term(&self, group: &str) -> Result<BTreeSet<u64>> {
        let p = self.rw.json(&["points", group])?;
        Ok(p["long_term"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["seq"].as_u64())
            .collect())
    }

    /// Wait for the first archive job of `group` to end; its length in seconds.
    fn archive_secs(&self, group: &str) -> Result<f64> {
        let key = format!("ltr/{group}");
        let t0 = Instant::now();
        loop {
            let jobs = self.rw.json(&["jobs"])?;
            let list = jobs
                .as_array()
                .or_else(|| jobs["jobs"].as_array())
                .cloned()
                .unwrap_or_default();
            if let Some(j) = list
                .iter()
                .filter(|j| j["group"] == key.as_str() && j["kind"] == "ltr-archive")
                .min_by_key(|j| j["id"].as_u64())
            {
                match j["state"].as_str() {
                    Some("succeeded") => {
                        let (s, e) = (j["started_ms"].as_u64(), j["ended_ms"].as_u64());
                        let (Some(s), Some(e)) = (s, e) else {
                            bail!("job without times: {j}")
                        };
                        return Ok(((e - s) as f64 / 1000.0).max(0.001));
                    }
                    Some("failed") => bail!("archive of {group} failed: {}", j["error"]),
                    _ => {}
                }
            }
            if t0.elapsed() > Duration::from_secs(900) {
                bail!("no archive of {group} within 15 minutes");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Both dedup ratios: (mixed-size churn, uniform 4 KiB churn).
    fn dedup(&self, size: u64) -> Result<(f64, f64)> {
        let groups = [("dmix", false), ("d4k", true)];
        let mut imgs = Vec::new();
        for (i, (g, _)) in groups.iter().enumerate() {
            let img = self.work.join(format!("{g}.img"));
            write_mixed_image(&img, size, 7 + i as u64)?;
            imgs.push(img);
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
        for day in 0..DAYS {
            // Just after a day boundary: the whole day's churn falls inside one day.
            let now = now_ms();
            std::thread::sleep(Duration::from_millis(DAY_MS - now % DAY_MS + 20));
            for (i, (g, uniform)) in groups.iter().enumerate() {
                if day == 0 {
                    self.push(g, &imgs[i], None)?;
                    self.policy(g, 3600, r#""ltr_daily_weeks":5"#)?;
                } else {
                    let prev = self.work.join(format!("{g}.prev"));
                    std::fs::copy(&imgs[i], &prev)?;
                    churn(&imgs[i], size, *uniform, &mut rng)?;
                    self.push(g, &imgs[i], Some(&prev))?;
                    std::fs::remove_file(&prev)?;
                }
            }
            for (g, _) in groups {
                if !tools::poll(1200, Duration::from_millis(50), || {
                    self.long_term(g).map(|s| s.len() > day).unwrap_or(false)
                }) {
                    bail!("day {day} of {g} was not archived");
                }
            }
            progress::log(format!("day {} archived", day + 1));
        }
        let root = self.work.join("store");
        let ratio = |g: &str| -> Result<f64> {
            let stored = stored_bytes(&root, g)?;
            Ok(DAYS as f64 * size as f64 / stored as f64)
        };
        Ok((ratio("dmix")?, ratio("d4k")?))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bytes a group's points take in a `file://` store: their manifests and the chunks they name
/// (each once).
fn stored_bytes(root: &Path, group: &str) -> Result<u64> {
    let dir = root.join("points").join(group).join("d0");
    let mut total = 0;
    let mut chunks = BTreeSet::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        total += std::fs::metadata(&p)?.len();
        let m: Value = serde_json::from_slice(&std::fs::read(&p)?)?;
        for c in m["chunks"].as_array().into_iter().flatten() {
            if let Some(h) = c.as_str().filter(|c| !c.is_empty()) {
                chunks.insert(h.to_string());
            }
        }
        n += 1;
    }
    if n < DAYS {
        bail!("{group} has {n} long-term points, not {DAYS}");
    }
    for h in chunks {
        total += std::fs::metadata(root.join("chunks").join(h))?.len();
    }
    Ok(total)
}

/// Fill `buf` with half random bytes, half text, per 8 KiB.
fn fill_mixed(buf: &mut [u8], rng: &mut Xoshiro256PlusPlus) {
    const TEXT: &[u8] =
        b"2026-12-05T06:30:00Z INFO rewind: replicated batch seq=123456 bytes=4194304 lag_ms=12\n";
    for (i, block) in buf.chunks_mut(4096).enumerate() {
        if i % 2 == 0 {
            rng.fill_bytes(block);
        } else {
            for (j, b) in block.iter_mut().enumerate() {
                *b = TEXT[j % TEXT.len()];
            }
        }
    }
}

/// A SIZE image of mixed data (seeded).
fn write_mixed_image(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut f = std::fs::File::create(path)?;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        fill_mixed(&mut buf, &mut rng);
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    Ok(())
}

/// 5% of the disk rewritten: mixed sizes (4 KiB .. 1 MiB) or uniform 4 KiB, random offsets.
fn churn(path: &Path, size: u64, uniform: bool, rng: &mut Xoshiro256PlusPlus) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut left = size / 20;
    let sizes = [4u64 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let len = if uniform {
            4096
        } else {
            sizes[rng.gen_range(0..sizes.len())]
        }
        .min(left);
        let off = rng.gen_range(0..(size - len) / 4096) * 4096;
        fill_mixed(&mut buf[..len as usize], rng);
        f.write_all_at(&buf[..len as usize], off)?;
        left -= len;
    }
    f.sync_all()?;
    Ok(())
}

/// An ext4 image of SIZE with `probe.bin` (4 MiB, random) and other files; returns the probe.
fn make_fs_image(img: &Path, size: u64, mnt: &Path) -> Result<Vec<u8>> {
    std::fs::File::create(img)?.set_len(size)?;
    tools::stdout_of(
        Command::new("mkfs.ext4").args(["-q", "-F"]).arg(img),
        "mkfs.ext4",
    )?;
    std::fs::create_dir_all(mnt)?;
    cleanup::add_mount(mnt);
    tools::stdout_of(
        Command::new("mount").args(["-o", "loop"]).arg(img).arg(mnt),
        "mount",
    )?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
    let mut probe = vec![0u8; 4 << 20];
    rng.fill_bytes(&mut probe);
    std::fs::write(mnt.join("probe.bin"), &probe)?;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..((size / 2) >> 20).saturating_sub(8) {
        fill_mixed(&mut buf, &mut rng);
        std::fs::write(mnt.join(format!("file-{i}.bin")), &buf)?;
    }
    tools::stdout_of(Command::new("umount").arg(mnt), "umount")?;
    Ok(probe)
}

/// The archive throughput to moto's S3 server (a daemon of its own), for information.
fn s3_upload(bins: &Bins, work: &Path, size: u64) -> Result<Series> {
    let dir = work.join("s3");
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = tools::append_file(&dir.join("moto.log"))?;
    let moto = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting moto_server")?;
    cleanup::add_proc(moto.id(), Stop::Term(GRACE));
    if !tools::poll(300, Duration::from_millis(100), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }) {
        bail!("moto_server did not listen");
    }
    tools::stdout_of(
        Command::new("curl")
            .args(["-sSf", "-X", "PUT"])
            .arg(format!("http://127.0.0.1:{port}/bench")),
        "creating the bucket",
    )?;
    let b = Bench {
        bins,
        rw: Rewind::new(bins, &dir),
        store: format!(
            "s3://bench?endpoint=http://127.0.0.1:{port}&allow_http=true&region=us-east-1&access_key_id=bench&secret_access_key=bench"
        ),
        work: dir.clone(),
    };
    let d = b.start()?;
    let mut s = Series::fixed(1);
    for r in 0..3 {
        let img = dir.join("up.img");
        write_mixed_image(&img, size, 500 + r)?;
        let g = format!("s3up{r}");
        b.push(&g, &img, None)?;
        b.policy(&g, 3600, UPLOAD_TIER)?;
        s.push(mb(size) / b.archive_secs(&g)?);
    }
    cleanup::terminate(d.id() as i32, GRACE);
    cleanup::forget_proc(d.id());
    cleanup::terminate(moto.id() as i32, GRACE);
    cleanup::forget_proc(moto.id());
    Ok(s)
}
