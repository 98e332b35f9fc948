//! `bar alert-delay-s` (part of `console`): how long from an agent's death (kill -9) until a
//! webhook receives the configuration server's `agent_not_seen` alert. Real parts throughout: a
//! `rewind-site` (SQLite), a `rewind-mtd` with a certificate from the site's CA, an agent set up
//! from the bundle `rewind-site protect` writes, and a webhook receiver (hyper) in this process.
//! Each run kills the agent, waits for the alert at the receiver, then starts the agent again
//! and waits until the alert has resolved.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use serde_json::Value;

use super::agentproc::Agent;
use super::cleanup::{self, Stop};
use super::stats::Series;
use super::tools;
use super::{progress, Settings};

/// When each `agent_not_seen` notice (fired) reached the receiver.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// The webhook receiver: a hyper server on a loopback port, in its own thread and runtime.
fn receiver(arrivals: Arrivals) -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((tcp, _)) = l.accept().await {
                let arrivals = arrivals.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let arrivals = arrivals.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            if v["transition"] == "fired" && v["alert"]["kind"] == "agent_not_seen"
                            {
                                if let Ok(mut a) = arrivals.lock() {
                                    a.push(Instant::now());
                                }
                            }
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                hyper::body::Bytes::new(),
                            )))
                        }
                    },
                );
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
    });
    Ok(url)
}

struct SiteCli {
    bin: PathBuf,
    state: PathBuf,
    url: String,
}

impl SiteCli {
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new(&self.bin);
        c.arg("--state").arg(&self.state);
        if !self.url.is_empty() {
            c.arg("--site").arg(&self.url);
        }
        tools::stdout_of(c.args(args), &format!("rewind-site {}", args.join(" ")))
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(&a)?;
        serde_json::from_str(&out).with_context(|| format!("rewind-site {args:?}: {out}"))
    }

    /// Firing alerts of `kind`.
    fn firing(&self, kind: &str) -> Result<usize> {
        let a = self.json(&["alerts"])?;
        Ok(a.as_array()
            .map_or(0, |a| a.iter().filter(|x| x["kind"] == kind).count()))
    }
}

/// A daemon started here: stopped on drop and on any exit.
fn spawn(cmd: &mut Command, log: &Path, what: &str) -> Result<Child> {
    let out = tools::log_file(log)?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    cleanup::add_proc(child.id(), Stop::Term(super::mtd::GRACE));
    Ok(child)
}

fn wait_file(path: &Path, what: &str, log: &Path) -> Result<String> {
    if !tools::poll(600, Duration::from_millis(50), || {
        tools::first_line(path).is_some()
    }) {
        bail!("{what} did not start: {}", tools::tail_file(log, 10));
    }
    Ok(std::fs::read_to_string(path)?)
}

/// Measures `runs` agent deaths; seconds from each kill to the alert at the webhook.
pub fn measure(settings: &Settings, runs: usize) -> Result<Series> {
    let bins = tools::build_alert_side(settings)?;
    let site_bin = bins.site.clone();
    let work = settings.make_workdir()?;
    let state = work.join("site");
    let mut site = SiteCli {
        bin: site_bin.clone(),
        state: state.clone(),
        url: String::new(),
    };
    site.run(&["init"])?;
    let ready = work.join("site.ready");
    let site_log = work.join("site.log");
    let mut site_proc = spawn(
        Command::new(&site_bin)
            .arg("--state")
            .arg(&state)
            .args(["serve", "--listen", "127.0.0.1:0", "--poll-every", "500ms"])
            .arg("--ready-file")
            .arg(&ready),
        &site_log,
        "rewind-site",
    )?;
    site.url = format!(
        "https://{}",
        wait_file(&ready, "rewind-site", &site_log)?.trim()
    );

    // The target, with a server certificate from the site's CA.
    let tls = work.join("t1-tls");
    tools::output(
        Command::new(&bins.mtd)
            .args([
                "ca",
                "issue",
                "--server",
                "t1",
                "--host",
                "127.0.0.1",
                "--dir",
            ])
            .arg(state.join("ca"))
            .arg("--out")
            .arg(&tls),
        "rewind-mtd ca issue",
    )?;
    let mtd_ready = work.join("t1.ready");
    let mtd_log = work.join("t1.log");
    let mut mtd = spawn(
        Command::new(&bins.mtd)
            .arg("serve")
            .arg("--data-dir")
            .arg(work.join("t1"))
            .args(["--listen", "127.0.0.1:0", "--tls-dir"])
            .arg(&tls)
            .args(["--control-listen", "127.0.0.1:0", "--nbd-listen", "none"])
            .args(["--nbd-unix", "none", "--control"])
            .arg(work.join("t1.control.sock"))
            .arg("--ready-file")
            .arg(&mtd_ready),
        &mtd_log,
        "rewind-mtd",
    )?;
    let lines = wait_file(&mtd_ready, "rewind-mtd", &mtd_log)?;
    let agents = lines.lines().next().unwrap_or_default().to_string();
    let Some(control) = lines.lines().find_map(|l| l.strip_prefix("control-tcp ")) else {
        bail!("rewind-mtd's ready file names no control-tcp address: {lines}");
    };
    site.run(&[
        "target",
        "add",
        "t1",
        "--url",
        &format!("https://{control}"),
        "--agents",
        &agents,
    ])?;
    site.run(&["policy", "create", "p", "--rpo", "1m", "--retention", "1h"])?;
    let arrivals: Arrivals = Arc::default();
    site.run(&[
        "alerts",
        "webhook",
        "bench",
        "--url",
        &receiver(arrivals.clone())?,
    ])?;
    if !tools::poll(300, Duration::from_millis(100), || {
        site.json(&["target", "list"])
            .is_ok_and(|t| t[0]["state"] == "up")
    }) {
        bail!(
            "the site never saw t1 up: {}",
            tools::tail_file(&site_log, 10)
        );
    }
    let img = work.join("disk.img");
    std::fs::File::create(&img)?.set_len(64 << 20)?;
    let p = site.json(&[
        "protect",
        "bench-host",
        "--group",
        "g",
        "--disk",
        &format!("sda={}", img.display()),
        "--policy",
        "p",
        "--target",
        "t1",
    ])?;
    let config = PathBuf::from(p["config"].as_str().context("protect: no config")?);
    let target = format!("tcp:{agents}");
    let extra = ["--config", config.to_str().context("config path")?];
    let mut series = Series::fixed(2);
    let mut agent = Some(Agent::start_to(&bins, &work, "g", &img, &target, &extra)?);
    for run in 1..=runs {
        // Quiet first: the agent connected and nothing of this kind firing.
        if !tools::poll(1200, Duration::from_millis(100), || {
            site.firing("agent_not_seen").is_ok_and(|n| n == 0)
                && site.json(&["groups"]).is_ok_and(|g| g[0]["state"] == "ok")
        }) {
            bail!(
                "run {run}: the group never settled: {}",
                tools::tail_file(&site_log, 10)
            );
        }
        let before = arrivals.lock().map(|a| a.len()).unwrap_or(0);
        if let Some(a) = agent.take() {
            a.kill9();
        }
        let killed = Instant::now();
        if !tools::poll(600, Duration::from_millis(20), || {
            arrivals.lock().is_ok_and(|a| a.len() > before)
        }) {
            bail!("run {run}: no alert at the webhook within 12 s");
        }
        let at = arrivals.lock().map(|a| a[before]).unwrap_or(killed);
        let v = series.push((at - killed).as_secs_f64());
        progress::log(format!(
            "run {run}: agent_not_seen at the webhook {v:.2} s after the kill"
        ));
        agent = Some(Agent::start_to(&bins, &work, "g", &img, &target, &extra)?);
    }
    if let Some(a) = agent.take() {
        a.stop();
    }
    for c in [&mut mtd, &mut site_proc] {
        let _ = c.kill();
        let _ = c.wait();
        cleanup::forget_proc(c.id());
    }
    Ok(series)
}
