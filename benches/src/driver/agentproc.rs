//! `rewind-agent` as the agent and failover benches run it: one agent per protected image, all
//! feeding the daemon on `work/agents.sock`, and what they report in their status file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cleanup::{self, Stop};
use super::mtd::GRACE;
use super::stats::jq_text;
use super::tools::{self, Bins};

/// A running agent protecting one image as group NAME, disk `sda`.
pub struct Agent {
    child: Child,
    /// Its state directory (`status.json` is there).
    pub state: PathBuf,
    /// The protected block device the agent exposes.
    pub dev: String,
    /// The image it protects.
    pub img: PathBuf,
    /// Its FUSE mount point.
    mount: PathBuf,
}

impl Agent {
    /// Starts an agent protecting `img` as group `name` (extra `rewind-agent run` flags in
    /// `extra`), replicating to the daemon on `work/agents.sock`, and waits up to 15 s for its
    /// device link.
    pub fn start(
        bins: &Bins,
        work: &Path,
        name: &str,
        img: &Path,
        extra: &[&str],
    ) -> Result<Agent> {
        let target = format!("unix:{}", work.join("agents.sock").display());
        Agent::start_to(bins, work, name, img, &target, extra)
    }

    /// [`Agent::start`] with another `--target`.
    pub fn start_to(
        bins: &Bins,
        work: &Path,
        name: &str,
        img: &Path,
        target: &str,
        extra: &[&str],
    ) -> Result<Agent> {
        let state = work.join(format!("agent-{name}"));
        std::fs::create_dir_all(&state)?;
        let mount = work.join(format!("agent-mnt-{name}"));
        let log = work.join(format!("agent-{name}.log"));
        let child = Command::new(&bins.agent)
            .args(["run", "--group", name, "--disk"])
            .arg(format!("sda={}", img.display()))
            .arg("--target")
            .arg(target)
            .arg("--state-dir")
            .arg(&state)
            .arg("--mount-dir")
            .arg(&mount)
            .arg("--links-dir")
            .arg(work.join("dev"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(tools::log_file(&work.join(format!("agent-{name}.out")))?)
            .stderr(tools::log_file(&log)?)
            .spawn()
            .context("starting rewind-agent")?;
        cleanup::add_proc(child.id(), Stop::Term(GRACE));
        cleanup::add_mount(&mount);
        let link = work.join("dev").join(name).join("sda");
        if !tools::poll(300, Duration::from_millis(50), || link.exists()) {
            bail!("rewind-agent did not start: {}", tools::tail_file(&log, 5));
        }
        let dev = std::fs::canonicalize(&link)?.to_string_lossy().into_owned();
        Ok(Agent {
            child,
            state,
            dev,
            img: img.to_path_buf(),
            mount,
        })
    }

    /// SIGTERM and wait for it to exit.
    pub fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        cleanup::forget_proc(self.child.id());
    }

    /// kill -9 (a crash), then detach the loop device and the FUSE mount it left behind, as an
    /// operator would before starting it again.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup::forget_proc(self.child.id());
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }

    /// The agent's `status.json`, `Null` while it cannot be read.
    pub fn status(&self) -> Value {
        std::fs::read(self.state.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// A field of the status as `jq -r` prints it (`null` when absent).
    pub fn status_text(&self, field: &str) -> String {
        jq_text(self.status().get(field))
    }

    /// Waits up to `limit_s` for the initial sync to be done (or not needed) and everything to
    /// be acknowledged.
    pub fn wait_synced(&self, limit_s: u32) -> Result<()> {
        let mut last = String::new();
        let synced = tools::poll(limit_s * 20, Duration::from_millis(50), || {
            let st = self.status();
            last = match st.get("sync") {
                Some(sync) => format!("{} {}", jq_text(Some(sync)), jq_text(st.get("caught_up"))),
                None => String::new(),
            };
            last == "done true" || last == "not-needed true"
        });
        if !synced {
            bail!("the agent did not finish its sync within {limit_s} s (status: {last})");
        }
        Ok(())
    }
}
