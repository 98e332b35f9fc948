//! `site [GROUPS]`: the configuration server at scale. Three master targets hold GROUPS groups
//! (default 1,000; the load generator stands in for agents, one small disk each), registered
//! with one `rewind-site`, on SQLite and on PostgreSQL (a throwaway cluster, when installed):
//!
//! - `site-groups-p99-ms`: the 99th percentile of `GET /v1/groups` (every group with its state)
//!   over a kept-alive HTTPS connection, per run of 100 requests.
//! - `policy-propagation-s`: a policy assigned to a label every group carries is updated; the
//!   time until the site reports every group's target running the new version (what a target
//!   runs is what its agents are told: the agents' side is timed by the site tests with real
//!   agents, not here, where no agent runs).
//! - `site-takeover-s` (PostgreSQL): the leader killed with -9 until the standby leads.
//!
//! Each bar is the worst backend's median; the per-backend medians print above the bars.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::report::{print_bars, Bar};
use super::site_proc::{init, SiteProc, TargetProc};
use super::stats::Series;
use super::{progress, tools, Settings};
use crate::harness::pg::Pg;
use crate::stats::percentile;

const TARGETS: usize = 3;
/// Requests per run of the listing bar.
const LISTINGS: usize = 100;
/// Loadgen processes at once while groups are made.
const MAKERS: usize = 6;

pub fn run(settings: &Settings, groups_arg: &str) -> Result<()> {
    let groups: usize = groups_arg
        .parse()
        .ok()
        .filter(|n| (1..=20_000).contains(n))
        .with_context(|| format!("site: GROUPS {groups_arg:?}: give a number, 1 to 20000"))?;
    tools::need_tool("curl", "curl")?;
    let bins = tools::build_site_side(settings)?;
    let work = settings.make_workdir()?;
    let runs = settings.runs.max(5);

    let mut results = Vec::new();
    results.push((
        "sqlite",
        backend(&bins, &work.join("sqlite"), None, groups, runs)?,
    ));
    match Pg::start() {
        Some(pg) => {
            let r = backend(&bins, &work.join("postgres"), Some(&pg), groups, runs)?;
            results.push(("postgres", r));
        }
        None => progress::note("PostgreSQL is not installed: its bars are not measured"),
    }
    for (name, r) in &results {
        progress::note(format!(
            "{name}: groups p99 {} ms ({}), propagation {} s ({}), takeover {} s ({})",
            r.listing.median_text(),
            r.listing.spread_text(),
            r.propagation.median_text(),
            r.propagation.spread_text(),
            r.takeover.median_text(),
            r.takeover.spread_text(),
        ));
    }
    let worst = |pick: fn(&Measured) -> &Series| -> Bar {
        let (name, s) = results
            .iter()
            .filter(|(_, r)| !pick(r).is_empty())
            .max_by(|a, b| {
                let (x, y) = (pick(&a.1).median(), pick(&b.1).median());
                x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|(n, r)| (*n, pick(r)))
            .unwrap_or(("none", pick(&results[0].1)));
        Bar {
            name: "",
            value: s.median_text(),
            want: "",
            spread: Some(format!("{} ({name})", s.spread_text())),
        }
    };
    let mut bars = vec![
        Bar {
            name: "site-groups-p99-ms",
            want: "< 100",
            ..worst(|r| &r.listing)
        },
        Bar {
            name: "policy-propagation-s",
            want: "< 5",
            ..worst(|r| &r.propagation)
        },
    ];
    if results.iter().any(|(_, r)| !r.takeover.is_empty()) {
        bars.push(Bar {
            name: "site-takeover-s",
            want: "< 10",
            ..worst(|r| &r.takeover)
        });
    }
    progress::finish();
    print_bars(runs, &bars);
    Ok(())
}

/// One backend's series.
struct Measured {
    listing: Series,
    propagation: Series,
    takeover: Series,
}

fn backend(
    bins: &tools::Bins,
    work: &std::path::Path,
    pg: Option<&Pg>,
    groups: usize,
    runs: usize,
) -> Result<Measured> {
    let kind = if pg.is_some() { "postgres" } else { "sqlite" };
    let state = work.join("state");
    std::fs::create_dir_all(work)?;
    let db = match pg {
        Some(pg) => pg.url(),
        None => format!("sqlite:{}", state.join("site.db").display()),
    };
    progress::log(format!("{kind}: a site and {TARGETS} master targets"));
    init(bins, &state, &db)?;
    let site = SiteProc::start(bins, &state, &db, 0)?;
    wait(Duration::from_secs(15), "the site leads", || {
        Ok(site.leads())
    })?;
    let targets: Vec<TargetProc> = (0..TARGETS)
        .map(|i| TargetProc::start(bins, work, &state, &format!("t{i}")))
        .collect::<Result<_>>()?;
    for t in &targets {
        site.cli(&[
            "target",
            "add",
            &t.name,
            "--url",
            &format!("https://{}", t.control),
        ])?;
    }
    make_groups(bins, &targets, groups)?;
    let t0 = Instant::now();
    wait(
        Duration::from_secs(120),
        "the site lists every group",
        || Ok(site.json(&["groups"])?.as_array().map_or(0, Vec::len) >= groups),
    )?;
    progress::log(format!(
        "{kind}: the site lists {groups} groups {:.1} s after they were made",
        tools::since(t0)
    ));

    let mut listing = Series::fixed(1);
    for run in 1..=runs {
        let mut ms: Vec<f64> = site
            .timed_gets("/v1/groups", LISTINGS + 1)?
            .into_iter()
            .map(|s| s * 1000.0)
            .collect();
        let p99 = listing.push(percentile(&mut ms, 99.0));
        progress::log(format!("{kind}: run {run}: GET /v1/groups p99 {p99} ms"));
    }

    let propagation = propagate(&site, groups, runs, kind)?;

    let mut takeover = Series::fixed(2);
    if pg.is_some() {
        let standby = SiteProc::start(bins, &state, &db, 1)?;
        let mut pair = [site, standby];
        for run in 1..=runs {
            wait(Duration::from_secs(30), "one instance leads", || {
                Ok(pair.iter().any(SiteProc::leads))
            })?;
            let leader = usize::from(!pair[0].leads());
            let other = 1 - leader;
            wait(Duration::from_secs(30), "the standby answers", || {
                Ok(pair[other].json(&["status"]).is_ok())
            })?;
            pair[leader].kill9();
            let t0 = Instant::now();
            wait(Duration::from_secs(60), "the standby leads", || {
                Ok(pair[other].leads())
            })?;
            let s = takeover.push(tools::since(t0));
            progress::log(format!("{kind}: run {run}: the standby led after {s} s"));
            // The killed instance comes back, as the standby now.
            let n = u32::try_from(run + 1).unwrap_or(u32::MAX);
            pair[leader] = SiteProc::start(bins, &state, &db, n)?;
        }
    }
    drop(targets);
    Ok(Measured {
        listing,
        propagation,
        takeover,
    })
}

/// `groups` groups spread over the targets, one 1 MiB disk each with 64 KiB written.
pub(super) fn make_groups(bins: &tools::Bins, targets: &[TargetProc], groups: usize) -> Result<()> {
    progress::log(format!("making {groups} groups (rewind-loadgen)"));
    let t0 = Instant::now();
    let mut running: Vec<(usize, std::process::Child)> = Vec::new();
    for g in 0..groups {
        if running.len() >= MAKERS {
            let (g, mut c) = running.remove(0);
            finish(g, &mut c)?;
        }
        let t = &targets[g % targets.len()];
        let child = Command::new(&bins.loadgen)
            .arg("run")
            .arg("--connect")
            .arg(format!("unix:{}", t.agents_sock.display()))
            .args(["--group", &format!("g{g:05}"), "--seed", &g.to_string()])
            .args([
                "--disk",
                "d0:1MiB",
                "--total",
                "64KiB",
                "--compression",
                "store",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting rewind-loadgen")?;
        running.push((g, child));
    }
    for (g, mut c) in running {
        finish(g, &mut c)?;
    }
    progress::log(format!("made in {:.1} s", tools::since(t0)));
    Ok(())
}

fn finish(g: usize, child: &mut std::process::Child) -> Result<()> {
    let status = child.wait()?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!(
            "rewind-loadgen for group {g} failed: {}",
            tools::tail(&err, 5)
        );
    }
    Ok(())
}

/// Every group labelled, a policy assigned to the label, then `runs` updates each timed until
/// the site reports every group running it.
fn propagate(site: &SiteProc, groups: usize, runs: usize, kind: &str) -> Result<Series> {
    progress::log(format!("{kind}: labelling {groups} groups"));
    for g in 0..groups {
        site.cli(&["group", "label", &format!("g{g:05}"), "tier=bench"])?;
    }
    site.cli(&[
        "policy",
        "create",
        "bench",
        "--rpo",
        "15m",
        "--retention",
        "2h",
    ])?;
    site.cli(&["policy", "assign", "bench", "--label", "tier=bench"])?;
    let mut version = 1;
    wait(Duration::from_secs(120), "policy v1 everywhere", || {
        running(site, version)
    })?;
    let mut s = Series::fixed(2);
    for run in 1..=runs {
        let retention = format!("{}h", 3 + run);
        site.cli(&["policy", "update", "bench", "--retention", &retention])?;
        version += 1;
        let t0 = Instant::now();
        wait(Duration::from_secs(120), "the update everywhere", || {
            running(site, version)
        })?;
        let took = s.push(tools::since(t0));
        progress::log(format!(
            "{kind}: run {run}: policy v{version} on every group's target after {took} s"
        ));
    }
    Ok(s)
}

/// Whether the site reports every group running `version` of its policy.
fn running(site: &SiteProc, version: u64) -> Result<bool> {
    let gs = site.json(&["groups"])?;
    let Some(list) = gs.as_array() else {
        bail!("rewind-site groups: not a list: {gs}");
    };
    Ok(list
        .iter()
        .all(|g| g["running_version"] == version && g["outdated"] == false))
}

/// Polls `ready` every 100 ms until it is true; fails after `limit` naming `what`.
pub(super) fn wait(
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if ready().unwrap_or(false) {
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
