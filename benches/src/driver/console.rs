//! `console [DISKS]`: what monitoring costs and how fast it tells. `metrics-scrape-ms`: the time
//! of a `GET /metrics` on a `rewind-mtd` holding DISKS disks (default 1,000: groups of ten, each
//! given a little data by `rewind-loadgen`), median of at least five scrapes. `alert-delay-s`
//! ([`super::alert_delay`]): an agent killed until a webhook has the site's alert, at least five
//! runs. `console-overview-ms` ([`super::console_overview`]): the web console's overview page on
//! a site with DISKS groups.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::mtd::{self, sibling};
use super::report::{print_bars, Bar};
use super::stats::Series;
use super::{progress, tools, Settings};
use crate::harness::http;

/// Disks per group: groups stay well under `--max-disks-per-group` (64).
const DISKS_PER_GROUP: usize = 10;

pub fn run(settings: &Settings, disks_arg: &str) -> Result<()> {
    let disks: usize = disks_arg
        .parse()
        .ok()
        .filter(|n| (1..=100_000).contains(n))
        .with_context(|| {
            format!("console: DISKS {disks_arg:?}: give a number of disks, 1 to 100000")
        })?;
    let bins = tools::build_target_side(settings)?;
    let work = settings.make_workdir()?;
    let data = work.join("data");
    let log = work.join("mtd.log");
    let groups = disks.div_ceil(DISKS_PER_GROUP);
    let quota = groups.to_string();
    let daemon = mtd::start_tcp_with(
        &bins,
        &data,
        &log,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-groups-per-agent",
            &quota,
        ],
    )?;
    let ready = sibling(&data, ".ready");
    let text = std::fs::read_to_string(&ready).context("reading the ready file")?;
    let Some(metrics) = text.lines().find_map(|l| l.strip_prefix("metrics ")) else {
        bail!("rewind-mtd's ready file names no metrics address:\n{text}");
    };
    progress::log(format!(
        "creating {disks} disks in {groups} groups (rewind-loadgen, 256 KiB each)"
    ));
    let t0 = Instant::now();
    for g in 0..groups {
        let n = DISKS_PER_GROUP.min(disks - g * DISKS_PER_GROUP);
        let mut cmd = Command::new(&bins.loadgen);
        cmd.args(["run", "--connect", &format!("tcp:{}", daemon.addr)])
            .args(["--group", &format!("c{g:05}"), "--seed", &g.to_string()])
            .args(["--pattern", "random", "--record-size", "4KiB"])
            .args([
                "--total",
                &format!("{}KiB", 256 * n),
                "--compression",
                "store",
            ])
            .stdin(Stdio::null());
        for d in 0..n {
            cmd.args(["--disk", &format!("d{d:02}:64MiB")]);
        }
        tools::output(&mut cmd, &format!("rewind-loadgen for group {g}"))?;
    }
    progress::log(format!("created in {:.1} s", tools::since(t0)));

    // Every disk must be on the page: the scrape is measured on the real thing.
    let (status, page) = http::try_get(metrics, "/metrics").map_err(anyhow::Error::msg)?;
    let series = page
        .lines()
        .filter(|l| l.starts_with("rewind_applied_bytes_total{"))
        .count();
    if status != 200 || series != disks {
        bail!("GET /metrics: status {status}, {series} disks on the page (want {disks})");
    }
    let scrapes = settings.runs.max(5);
    let mut ms = Series::fixed(2);
    for i in 0..scrapes {
        let t = Instant::now();
        let (status, body) = http::try_get(metrics, "/metrics").map_err(anyhow::Error::msg)?;
        let v = ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("GET /metrics: status {status}");
        }
        progress::log(format!(
            "scrape {}: {v:.2} ms, {} KiB",
            i + 1,
            body.len() >> 10
        ));
    }
    daemon.stop();
    println!(
        "metrics page of a target with {disks} disks in {groups} groups: {} KiB",
        page.len() >> 10
    );
    progress::log("alert-delay-s: a site, a target and an agent (root: FUSE, loop devices)");
    let alerts = super::alert_delay::measure(settings, scrapes)?;
    progress::log(format!(
        "console-overview-ms: a site with {disks} groups on three targets"
    ));
    let overview = super::console_overview::measure(settings, disks, scrapes)?;
    print_bars(
        scrapes,
        &[
            Bar {
                name: "metrics-scrape-ms",
                value: ms.median_text(),
                want: "< 100",
                spread: Some(ms.spread_text()),
            },
            Bar {
                name: "console-overview-ms",
                value: overview.median_text(),
                want: "< 300",
                spread: Some(overview.spread_text()),
            },
            Bar {
                name: "alert-delay-s",
                value: alerts.median_text(),
                want: "< 10",
                spread: Some(alerts.spread_text()),
            },
        ],
    );
    Ok(())
}
