//! The configuration server and its master targets as the site bench runs them: `rewind-site`
//! instances on one state directory and database (stopped by pid, registered for cleanup), its
//! CLI as the local admin, timed HTTPS reads with curl, and `rewind-mtd` targets whose
//! certificates come from the site's CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::cleanup::{self, Stop};
use super::tools::{self, Bins};

/// One `rewind-site serve`.
pub struct SiteProc {
    pub url: String,
    bin: PathBuf,
    state: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// `rewind-site init`: the CA, the site's certificates, the schema and the admin user.
pub fn init(bins: &Bins, state: &Path, db: &str) -> Result<()> {
    tools::output(
        Command::new(&bins.site)
            .arg("--state")
            .arg(state)
            .args(["init", "--db", db]),
        "rewind-site init",
    )?;
    Ok(())
}

impl SiteProc {
    /// Serves `state` on `db`, polling targets every 500 ms; `n` tells instances apart.
    pub fn start(bins: &Bins, state: &Path, db: &str, n: u32) -> Result<SiteProc> {
        let ready = state.join(format!("ready.{n}"));
        let _ = std::fs::remove_file(&ready);
        let log = state.join(format!("site.{n}.log"));
        let child = Command::new(&bins.site)
            .arg("--state")
            .arg(state)
            .args(["serve", "--listen", "127.0.0.1:0", "--poll-every", "500ms"])
            .args(["--db", db])
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(tools::log_file(&log)?)
            .spawn()
            .context("starting rewind-site serve")?;
        cleanup::add_proc(child.id(), Stop::Kill);
        let mut s = SiteProc {
            url: String::new(),
            bin: bins.site.clone(),
            state: state.to_path_buf(),
            log,
            child: Some(child),
        };
        if !tools::poll(300, Duration::from_millis(100), || {
            tools::first_line(&ready).is_some()
        }) {
            s.kill9();
            bail!(
                "rewind-site did not start: {}",
                tools::tail_file(&s.log, 20)
            );
        }
        s.url = format!("https://{}", tools::first_line(&ready).unwrap_or_default());
        Ok(s)
    }

    /// kill -9, by pid, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            cleanup::forget_proc(c.id());
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The CLI against this instance as the local admin; its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        tools::stdout_of(
            Command::new(&self.bin)
                .arg("--state")
                .arg(&self.state)
                .args(["--site", &self.url])
                .env_remove("REWIND_SITE_TOKEN")
                .args(args),
            &format!("rewind-site {}", args.join(" ")),
        )
    }

    /// `--json` output of a read command.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let text = self.cli(&[&["--json"], args].concat())?;
        serde_json::from_str(&text).with_context(|| format!("rewind-site {args:?}: not JSON"))
    }

    /// Whether this instance answers and says it leads.
    pub fn leads(&self) -> bool {
        self.json(&["status"]).is_ok_and(|v| v["leader"] == true)
    }

    /// `requests` GETs of `path` on one kept-alive connection (curl, the admin's client
    /// certificate): the seconds each took, TLS handshake excluded after the first.
    pub fn timed_gets(&self, path: &str, requests: usize) -> Result<Vec<f64>> {
        let client = self.state.join("ca/clients/admin");
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--show-error", "--fail"])
            .arg("--cacert")
            .arg(self.state.join("ca/ca.crt"))
            .arg("--cert")
            .arg(client.join("client-cert.pem"))
            .arg("--key")
            .arg(client.join("client-key.pem"));
        for _ in 0..requests {
            cmd.args(["--output", "/dev/null", "--write-out", "%{time_total}\\n"])
                .arg(format!("{}{path}", self.url));
        }
        let text = tools::stdout_of(&mut cmd, &format!("curl GET {path}"))?;
        let times: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if times.len() != requests {
            bail!("curl timed {} of {requests} requests", times.len());
        }
        // The first carries the handshake: not what a listing costs.
        Ok(times[1..].to_vec())
    }
}

impl Drop for SiteProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A master target the site manages: agents on a unix socket (the load generator) and TLS
/// (`--listen`), the control API on TCP with mutual TLS for the site.
pub struct TargetProc {
    pub name: String,
    pub agents_sock: PathBuf,
    pub control: String,
    child: Child,
}

impl TargetProc {
    pub fn start(bins: &Bins, work: &Path, state: &Path, name: &str) -> Result<TargetProc> {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir)?;
        let tls = dir.join("tls");
        tools::output(
            Command::new(&bins.mtd)
                .args(["ca", "issue", "--server", name, "--host", "127.0.0.1"])
                .arg("--dir")
                .arg(state.join("ca"))
                .arg("--out")
                .arg(&tls),
            &format!("rewind-mtd ca issue --server {name}"),
        )?;
        let tls = tls.to_str().context("a UTF-8 path")?.to_string();
        let child = super::mtd::start_unix(
            bins,
            &dir,
            &[
                "--listen",
                "127.0.0.1:0",
                "--tls-dir",
                &tls,
                "--control-listen",
                "127.0.0.1:0",
                "--nbd-listen",
                "none",
                "--nbd-unix",
                "none",
                "--io-engine",
                "sync",
                "--max-groups-per-agent",
                "100000",
            ],
            30,
        )?;
        let ready = std::fs::read_to_string(dir.join("ready"))?;
        let Some(control) = ready.lines().find_map(|l| l.strip_prefix("control-tcp ")) else {
            bail!("{name}: the ready file names no control-tcp address:\n{ready}");
        };
        Ok(TargetProc {
            name: name.to_string(),
            agents_sock: dir.join("agents.sock"),
            control: control.to_string(),
            child,
        })
    }
}

impl Drop for TargetProc {
    fn drop(&mut self) {
        cleanup::forget_proc(self.child.id());
        cleanup::terminate(self.child.id() as i32, Duration::from_secs(10));
        let _ = self.child.wait();
    }
}
