//! `console-overview-ms`: the web console's overview page (stat cards, the heat grid of every
//! group, worst offenders, alerts, jobs) on a site with GROUPS groups (three master targets, the
//! load generator making the groups as in [`super::site`]), timed by curl on one kept-alive HTTPS
//! connection with a signed-in session: the server's time to render and send the page, the TLS
//! handshake excluded. Each run is the median of 20 requests.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::site::{make_groups, wait};
use super::site_proc::{init, SiteProc, TargetProc};
use super::stats::Series;
use super::{progress, tools, Settings};

const TARGETS: usize = 3;
/// Requests per run (the first, with the handshake, is not counted).
const REQUESTS: usize = 21;
const USER: &str = "bench";
const PASSWORD: &str = "bench-console-password";

pub fn measure(settings: &Settings, groups: usize, runs: usize) -> Result<Series> {
    tools::need_tool("curl", "curl")?;
    let bins = tools::build_site_side(settings)?;
    let work = settings.make_workdir()?;
    let state = work.join("state");
    let db = format!("sqlite:{}", state.join("site.db").display());
    init(&bins, &state, &db)?;
    let site = SiteProc::start(&bins, &state, &db, 0)?;
    wait(Duration::from_secs(15), "the site leads", || {
        Ok(site.leads())
    })?;
    let targets: Vec<TargetProc> = (0..TARGETS)
        .map(|i| TargetProc::start(&bins, &work, &state, &format!("t{i}")))
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
    make_groups(&bins, &targets, groups)?;
    let t0 = Instant::now();
    wait(
        Duration::from_secs(120),
        "the site lists every group",
        || Ok(site.json(&["groups"])?.as_array().map_or(0, Vec::len) >= groups),
    )?;
    progress::log(format!(
        "the site lists {groups} groups {:.1} s after they were made",
        tools::since(t0)
    ));
    let pw = work.join("bench.password");
    std::fs::write(&pw, format!("{PASSWORD}\n"))?;
    let pw_arg = pw.to_str().context("a UTF-8 path")?;
    site.cli(&[
        "user",
        "add",
        USER,
        "--role",
        "viewer",
        "--password-from",
        pw_arg,
    ])?;
    let jar = work.join("cookies");
    login(&site.url, &state, &jar)?;
    let mut s = Series::fixed(1);
    for run in 1..=runs {
        let mut ms = timed_pages(&site.url, &state, &jar, groups)?;
        ms.sort_by(f64::total_cmp);
        let v = s.push(ms[ms.len() / 2]);
        progress::log(format!(
            "run {run}: overview with {groups} groups: median {v} ms (of {})",
            ms.len()
        ));
    }
    drop(targets);
    Ok(s)
}

fn curl(state: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["--silent", "--show-error", "--fail"])
        .arg("--cacert")
        .arg(state.join("ca/ca.crt"));
    c
}

/// Sign in through the login form; the session cookie lands in `jar`.
fn login(url: &str, state: &Path, jar: &Path) -> Result<()> {
    let mut c = curl(state);
    c.arg("--cookie-jar")
        .arg(jar)
        .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
        .args(["--data", &format!("user={USER}&password={PASSWORD}")])
        .arg(format!("{url}/console/login"));
    let code = tools::stdout_of(&mut c, "curl POST /console/login")?;
    if code.trim() != "303" {
        bail!("signing in to the console: HTTP {} (want 303)", code.trim());
    }
    Ok(())
}

/// The overview fetched REQUESTS times on one connection: milliseconds each, the first dropped.
/// Each page must be the overview with every group in its grid.
fn timed_pages(url: &str, state: &Path, jar: &Path, groups: usize) -> Result<Vec<f64>> {
    let page = jar.with_file_name("overview.html");
    let mut c = curl(state);
    c.arg("--cookie").arg(jar);
    for _ in 0..REQUESTS {
        c.arg("--output")
            .arg(&page)
            .args(["--write-out", "%{time_total}\\n"])
            .arg(format!("{url}/console/"));
    }
    let text = tools::stdout_of(&mut c, "curl GET /console/")?;
    let times: Vec<f64> = text
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|s| s * 1000.0)
        .collect();
    if times.len() != REQUESTS {
        bail!("curl timed {} of {REQUESTS} requests", times.len());
    }
    let html = std::fs::read_to_string(&page)?;
    let cells = html.matches("class=\"cell ").count();
    if !html.contains("<h1>Overview</h1>") || cells != groups {
        bail!("GET /console/: not the overview of {groups} groups ({cells} cells)");
    }
    Ok(times[1..].to_vec())
}
