//! A `rewind-agent run` process protecting disks of one group, with its state, FUSE mount and
//! links under a work directory; stopped, and what it left behind undone, on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::agent_status::read_status;

use super::bins::bin;
use super::cmd::run_ok;
use super::loopdev::detach_if_backed_under;
use super::mounts::umount_lazy;
use super::procs::sigterm_and_wait;

/// `rewind-agent run` protecting `disks` of `group`, with its mount, links and state under `work`.
pub struct Agent {
    pub(super) child: Option<Child>,
    pub state: PathBuf,
    pub mount_dir: PathBuf,
    pub links: PathBuf,
    pub log: PathBuf,
    pub group: String,
    /// Loop devices seen in the status file: detached on drop if the agent left them behind.
    devices: Vec<PathBuf>,
    /// Stopped and cleaned up already: a later drop must not touch the mount dir, which a new
    /// agent on the same work dir may be using.
    done: bool,
}

impl Agent {
    /// The agent's paths under `work`; not started yet.
    fn in_work(work: &Path, group: &str) -> Agent {
        let state = work.join("agent-state");
        fs::create_dir_all(&state).expect("state dir");
        Agent {
            child: None,
            state,
            mount_dir: work.join("agent-mnt"),
            links: work.join("links"),
            log: work.join("agent.log"),
            group: group.to_string(),
            devices: Vec::new(),
            done: false,
        }
    }

    /// Spawns `cmd` (a `rewind-agent run`), logging to `self.log`, and waits until its status
    /// file names every disk's device.
    fn launch(&mut self, mut cmd: Command, disks: usize) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        self.child = Some(
            cmd.env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn rewind-agent"),
        );
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rewind-agent exited early ({s}):\n{}", self.log_text());
            }
            let pid = self.child.as_ref().unwrap().id();
            if let Ok(st) = read_status(&self.state) {
                // (A status file left by an earlier agent on this state dir does not count.)
                if st.pid == pid
                    && st.disks.len() == disks
                    && st.disks.iter().all(|d| !d.device.as_os_str().is_empty())
                {
                    self.devices = st.disks.iter().map(|d| d.device.clone()).collect();
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "agent not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn start(
        work: &Path,
        group: &str,
        disks: &[(&str, &Path)],
        target: &str,
        extra: &[&str],
    ) -> Agent {
        let mut a = Agent::in_work(work, group);
        let cmd = a.run_command(disks, target, extra);
        a.launch(cmd, disks.len());
        a
    }

    /// Like [`Agent::start`], but every setting comes from a TOML file written to
    /// `work/agent.toml` (the same paths as `start`, then `more_toml`, then the disks) and the
    /// command line is `run --config FILE` plus `extra`.
    pub fn start_with_config(
        work: &Path,
        group: &str,
        disks: &[(&str, &Path)],
        target: &str,
        more_toml: &str,
        extra: &[&str],
    ) -> Agent {
        let mut a = Agent::in_work(work, group);
        // (Rust's Debug quoting of these plain paths is valid TOML.)
        let mut toml = format!(
            "agent_name = \"test-agent\"\ngroup = {group:?}\ntarget = {target:?}\n\
             state_dir = {:?}\nmount_dir = {:?}\nlinks_dir = {:?}\n{more_toml}\n",
            a.state, a.mount_dir, a.links
        );
        for (name, path) in disks {
            toml += &format!("\n[[disk]]\nname = {name:?}\npath = {path:?}\n");
        }
        let config = work.join("agent.toml");
        fs::write(&config, toml).expect("write the agent config");
        let mut cmd = Command::new(bin("rewind-agent"));
        cmd.arg("run").arg("--config").arg(&config).args(extra);
        a.launch(cmd, disks.len());
        a
    }

    /// Runs `rewind-agent run` as [`Agent::start`] would, expecting it to refuse to start (exit
    /// non-zero within 30 s); returns what it printed and logged. Panics if it starts (the agent
    /// is then stopped and cleaned up on drop).
    pub fn start_refused(
        work: &Path,
        group: &str,
        disks: &[(&str, &Path)],
        target: &str,
        extra: &[&str],
    ) -> String {
        let mut a = Agent::in_work(work, group);
        let out_path = work.join("agent-refused.out");
        let out = fs::File::create(&out_path).expect("agent output file");
        let mut cmd = a.run_command(disks, target, extra);
        a.child = Some(
            cmd.env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .spawn()
                .expect("spawn rewind-agent"),
        );
        let t0 = Instant::now();
        loop {
            if let Some(s) = a.child.as_mut().unwrap().try_wait().unwrap() {
                a.child = None;
                a.done = true;
                let text = fs::read_to_string(&out_path).unwrap_or_default();
                assert!(
                    !s.success(),
                    "rewind-agent exited 0 instead of refusing:\n{text}"
                );
                return text;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "rewind-agent did not refuse to start:\n{}",
                fs::read_to_string(&out_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `rewind-agent run` command line for this agent's paths.
    fn run_command(&self, disks: &[(&str, &Path)], target: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin("rewind-agent"));
        cmd.arg("run")
            .args(["--group", &self.group, "--target", target]);
        // `extra` may name the agent itself (a certificate issued to another name).
        if !extra.contains(&"--agent-name") {
            cmd.args(["--agent-name", "test-agent"]);
        }
        cmd.arg("--state-dir")
            .arg(&self.state)
            .arg("--mount-dir")
            .arg(&self.mount_dir)
            .arg("--links-dir")
            .arg(&self.links)
            .args(extra);
        for (name, path) in disks {
            cmd.arg("--disk").arg(format!("{name}={}", path.display()));
        }
        cmd
    }

    /// The workload's device for `disk` (the link the agent made).
    pub fn link(&self, disk: &str) -> PathBuf {
        self.links.join(&self.group).join(disk)
    }

    /// `rewind-agent tag`; returns the tag's seq.
    pub fn tag(&self, name: &str, freeze: &[&Path]) -> u64 {
        let mut cmd = Command::new(bin("rewind-agent"));
        cmd.arg("tag").arg("--state-dir").arg(&self.state).args([
            "--name",
            name,
            "--group",
            &self.group,
        ]);
        for f in freeze {
            cmd.arg("--freeze").arg(f);
        }
        let out = run_ok(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("tag {name} at seq ")))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no seq in tag output: {text}"))
    }

    /// SIGTERM: the agent detaches, unmounts, drains and exits 0 when everything was acked.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let s = sigterm_and_wait(&mut c, Duration::from_secs(60))
                .unwrap_or_else(|| panic!("rewind-agent did not stop:\n{}", self.log_text()));
            self.done = true;
            assert!(
                s.success(),
                "rewind-agent exited with {s}:\n{}",
                self.log_text()
            );
        }
    }

    /// Waits up to `limit` for the agent to exit by itself, then undoes what it left behind:
    /// its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            let c = self.child.as_mut()?;
            if let Some(s) = c.try_wait().expect("waiting for rewind-agent") {
                self.child = None;
                self.cleanup();
                return Some(s);
            }
            if t0.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 (a crash of the agent), then detach what it left behind, as an operator would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup();
    }

    pub fn log_text(&self) -> String {
        // A log pointed at a device (a test of an unwritable log, `/dev/full`) is not read:
        // /dev/full reads zeroes without end.
        match fs::metadata(&self.log) {
            Ok(m) if m.is_file() => fs::read_to_string(&self.log).unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn cleanup(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // Whatever a killed agent left behind: its loop devices and FUSE mount.
        for d in &self.devices {
            detach_if_backed_under(d, &self.mount_dir);
        }
        umount_lazy(&self.mount_dir);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm_and_wait(&mut c, Duration::from_secs(20));
        }
        self.cleanup();
    }
}
