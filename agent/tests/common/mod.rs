//! Test harness: a real `rewind-mtd serve` and a real `rewind-agent run` as processes, and
//! guards that undo everything a test set up (mounts, loop devices, FUSE mounts, processes, by
//! pid) even when it fails.
#![allow(dead_code)]

pub mod vm;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rewind_agent::status::{self, Status, SyncState};

/// A binary of this workspace: the agent's own, or rewind-mtd from the same target dir.
pub fn bin(name: &str) -> PathBuf {
    if name == "rewind-agent" {
        return PathBuf::from(env!("CARGO_BIN_EXE_rewind-agent"));
    }
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: build the workspace first (`cargo build --workspace` or `cargo test --workspace`)",
        p.display()
    );
    p
}

/// Skips (loudly) when the machine cannot run these tests.
pub fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let fuse = Path::new("/dev/fuse").exists();
    let tools = ["losetup", "mkfs.ext4", "e2fsck", "fsfreeze", "fio"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !(root && fuse && tools) {
        eprintln!(
            "SKIPPED: needs root ({root}), /dev/fuse ({fuse}) and losetup, mkfs.ext4, e2fsck, fsfreeze, fio ({tools})"
        );
        return false;
    }
    true
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rewind-agent-test-")
        .tempdir_in("/var/tmp")
        .expect("temp dir")
}

pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sigterm_and_wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let t0 = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A xorshift64 generator: cheap, seeded, incompressible test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// Opens a protected device (or any file) for O_DIRECT writes: no page cache between a write
/// and its capture.
pub fn open_direct(dev: &Path) -> fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| panic!("opening {} for direct writes: {e}", dev.display()))
}

/// Writes `mib` MiB of incompressible data (seeded) through `dev` with O_DIRECT, in 1 MiB
/// writes from `at_mib` MiB; returns how long the writes took.
pub fn write_random_mib(dev: &Path, at_mib: u64, mib: u64, seed: u64) -> Duration {
    use std::os::unix::fs::FileExt;
    let f = open_direct(dev);
    let mut buf = rewind_linux::aligned::AlignedBuf::new(1 << 20);
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    for i in 0..mib {
        rng.fill(&mut buf);
        f.write_all_at(&buf, (at_mib + i) << 20).expect("write");
    }
    t0.elapsed()
}

/// `rewind-mtd serve` on a unix socket in `work` (or, with [`Mtd::start_tls`], on TLS over
/// loopback TCP), with no NBD TCP listener and its own NBD and control sockets (so parallel tests
/// never collide).
pub struct Mtd {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub sock: PathBuf,
    pub control: PathBuf,
    pub log: PathBuf,
    /// `--tls-dir`: serve agents on 127.0.0.1 (a free port) with TLS instead of the unix socket.
    pub tls_dir: Option<PathBuf>,
    /// The TCP address from the ready file (TLS only).
    pub tcp: Option<String>,
    /// More `serve` flags (`--views DIR`, ...).
    pub extra: Vec<String>,
}

impl Mtd {
    pub fn start(work: &Path) -> Mtd {
        Mtd::start_with(work, &[])
    }

    /// Like [`Mtd::start`], with more `serve` flags.
    pub fn start_with(work: &Path, extra: &[&str]) -> Mtd {
        Mtd::launch(work, None, extra)
    }

    /// Like [`Mtd::start`], but agents connect with mutual TLS to 127.0.0.1 (a free port, read
    /// from the ready file), with the CA directory `tls_dir` (`rewind-mtd ca init`).
    pub fn start_tls(work: &Path, tls_dir: &Path) -> Mtd {
        Mtd::launch(work, Some(tls_dir), &[])
    }

    fn launch(work: &Path, tls_dir: Option<&Path>, extra: &[&str]) -> Mtd {
        let mut m = Mtd {
            child: None,
            data_dir: work.join("mtd-data"),
            sock: work.join("mtd.sock"),
            control: work.join("mtd-control.sock"),
            log: work.join("mtd.log"),
            tls_dir: tls_dir.map(Path::to_path_buf),
            tcp: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        m.restart();
        m
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let ready = self.data_dir.with_extension("ready");
        let _ = fs::remove_file(&ready);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("mtd log");
        let mut cmd = Command::new(bin("rewind-mtd"));
        cmd.arg("serve").arg("--data-dir").arg(&self.data_dir);
        match &self.tls_dir {
            None => cmd.arg("--unix").arg(&self.sock),
            Some(d) => cmd
                .arg("--tls-dir")
                .arg(d)
                .args(["--listen", "127.0.0.1:0"]),
        };
        let child = cmd
            .arg("--ready-file")
            .arg(&ready)
            .args(["--nbd-listen", "none"])
            .arg("--nbd-unix")
            .arg(self.data_dir.with_extension("nbd.sock"))
            .arg("--control")
            .arg(&self.control)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rewind-mtd");
        self.child = Some(child);
        let t0 = Instant::now();
        while !ready.exists() {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rewind-mtd exited early ({s}):\n{}", self.log_text());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "rewind-mtd not ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.tls_dir.is_some() {
            // The agents' listeners come first in the ready file: here the one TCP address.
            let text = fs::read_to_string(&ready).expect("ready file");
            let first = text.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("127.0.0.1:"),
                "ready file {}: {text:?}",
                ready.display()
            );
            self.tcp = Some(first.to_string());
        }
    }

    pub fn target(&self) -> String {
        match &self.tcp {
            Some(a) => format!("tcp:{a}"),
            None => format!("unix:{}", self.sock.display()),
        }
    }

    /// SIGTERM and wait (it drains what it received first).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            assert!(
                sigterm_and_wait(&mut c, Duration::from_secs(30)).is_some(),
                "rewind-mtd did not stop on SIGTERM"
            );
        }
    }

    /// kill -9 (a crash of the target).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the target, dumps `group/disk` at latest beside its data dir, and asserts it
    /// equals `source` byte for byte. Returns the dump's path.
    pub fn stop_and_check_latest(&mut self, group: &str, disk: &str, source: &Path) -> PathBuf {
        self.stop();
        let latest = self
            .data_dir
            .with_extension(format!("{group}-{disk}-latest.img"));
        let _ = fs::remove_file(&latest);
        self.dump(group, disk, "latest", &latest);
        assert_same(&latest, source);
        latest
    }

    /// `rewind-mtd dump` of a point of a disk to `out` (the daemon must be stopped).
    pub fn dump(&self, group: &str, disk: &str, at: &str, out: &Path) {
        run(Command::new(bin("rewind-mtd"))
            .arg("dump")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--group", group, "--disk", disk, "--at", at])
            .arg("-o")
            .arg(out));
    }
}

impl Drop for Mtd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm_and_wait(&mut c, Duration::from_secs(20));
        }
    }
}

/// `rewind-agent run` protecting `disks` of `group`, with its mount, links and state under `work`.
pub struct Agent {
    child: Option<Child>,
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
            if let Ok(st) = status::read(&self.state) {
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

    /// The `rewind-agent run` command line for this agent's paths.
    fn run_command(&self, disks: &[(&str, &Path)], target: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin("rewind-agent"));
        cmd.arg("run")
            .args([
                "--group",
                &self.group,
                "--target",
                target,
                "--agent-name",
                "test-agent",
            ])
            .arg("--state-dir")
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

    pub fn status(&self) -> Status {
        status::read(&self.state).expect("agent status")
    }

    /// The first status written after this call (the agent rewrites it every 200 ms).
    pub fn fresh_status(&self) -> Status {
        let since = rewind_linux::clock::now_ms();
        let t0 = Instant::now();
        loop {
            if let Ok(st) = status::read(&self.state) {
                if st.updated_ms > since {
                    return st;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the agent stopped writing its status"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The workload's device for `disk` (the link the agent made).
    pub fn link(&self, disk: &str) -> PathBuf {
        self.links.join(&self.group).join(disk)
    }

    /// Waits until the agent is connected, the target acknowledged everything recorded, and the
    /// sync is settled (done, not needed, or failed), as seen in a status written after this
    /// call.
    pub fn wait_caught_up(&self, limit: Duration) -> Status {
        wait_caught_up_at(&self.state, limit, &|| self.log_text())
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
        let out = run(&mut cmd);
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

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Agent {
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
}

impl Agent {
    /// kill -9 (a crash of the agent), then detach what it left behind, as an operator would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // Whatever a killed agent left behind: its loop devices and FUSE mount.
        for d in &self.devices {
            let still = Command::new("losetup").arg(d).output().is_ok_and(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout)
                        .contains(&*self.mount_dir.to_string_lossy())
            });
            if still {
                let _ = Command::new("losetup").arg("-d").arg(d).status();
            }
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_dir)
            .stderr(Stdio::null())
            .status();
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

/// A mounted filesystem, unmounted on drop.
pub struct Mount(pub Option<PathBuf>);

impl Mount {
    pub fn new(dev: &Path, at: &Path) -> Mount {
        fs::create_dir_all(at).expect("mount point");
        run(Command::new("mount").arg(dev).arg(at));
        Mount(Some(at.to_path_buf()))
    }

    pub fn umount(&mut self) {
        if let Some(p) = self.0.take() {
            run(Command::new("umount").arg(&p));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // A frozen filesystem cannot be unmounted: thaw first (harmless if not frozen).
            let _ = Command::new("fsfreeze")
                .arg("-u")
                .arg(&p)
                .stderr(Stdio::null())
                .status();
            if !Command::new("umount")
                .arg(&p)
                .status()
                .is_ok_and(|s| s.success())
            {
                let _ = Command::new("umount").arg("-l").arg(&p).status();
            }
        }
    }
}

/// Asserts two files are equal byte for byte (cmp).
pub fn assert_same(a: &Path, b: &Path) {
    let out = Command::new("cmp").arg(a).arg(b).output().expect("cmp");
    assert!(
        out.status.success(),
        "{} and {} differ: {}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

/// `e2fsck -fn` is clean.
pub fn assert_fsck_clean(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn {} is not clean ({}):\n{}{}",
        img.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Mtd {
    /// The NBD unix socket.
    pub fn nbd_sock(&self) -> PathBuf {
        self.data_dir.with_extension("nbd.sock")
    }

    /// The `rewind` CLI against this daemon; the output of a successful run.
    pub fn rewind(&self, args: &[&str]) -> String {
        let out = run(Command::new(bin("rewind"))
            .arg("--control")
            .arg(&self.control)
            .args(args));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `rewind --json ...`, parsed.
    pub fn rewind_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.rewind(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("rewind {args:?}: {e}: {text}"))
    }

    /// A `rewind` command that must fail: its stderr.
    pub fn rewind_fails(&self, args: &[&str]) -> String {
        let out = Command::new(bin("rewind"))
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rewind");
        assert!(
            !out.status.success(),
            "rewind {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

/// [`Agent::wait_caught_up`] for any agent's state dir (one this harness did not start: a
/// reverse-replication agent run by rewind-mtd, say); `log` is shown on failure.
pub fn wait_caught_up_at(state: &Path, limit: Duration, log: &dyn Fn() -> String) -> Status {
    let since = rewind_linux::clock::now_ms();
    let t0 = Instant::now();
    loop {
        if let Ok(st) = status::read(state) {
            let settled = !matches!(
                st.sync,
                SyncState::Pending | SyncState::Running | SyncState::Acking | SyncState::Bitmap
            ) && !st.bitmap_mode
                && st.pinned_regions == 0;
            if st.updated_ms > since
                && st.connected
                && st.caught_up
                && st.acked_seq == st.last_seq
                && settled
            {
                return st;
            }
        }
        assert!(
            t0.elapsed() < limit,
            "agent did not catch up within {limit:?}: {:?}\n{}",
            status::read(state).ok(),
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Mtd {
    /// POST `body` (JSON) to the control API at `path` (curl over the unix socket); returns the
    /// HTTP status and the body.
    pub fn control_post(&self, path: &str, body: &str) -> (u16, String) {
        self.control_call("POST", path, Some(body))
    }

    /// GET from the control API at `path`; returns the HTTP status and the body.
    pub fn control_get(&self, path: &str) -> (u16, String) {
        self.control_call("GET", path, None)
    }

    fn control_call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "300", "-X", method])
            .arg("--unix-socket")
            .arg(&self.control)
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", b]);
        }
        cmd.arg(format!("http://localhost{path}"));
        let out = run(&mut cmd);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no HTTP status in curl output {text:?}"));
        (code, body.to_string())
    }
}

impl Agent {
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

    /// Waits up to `limit` for a status (written after this call) that satisfies `ok`.
    pub fn wait_status(&self, limit: Duration, ok: impl Fn(&Status) -> bool) -> Status {
        let since = rewind_linux::clock::now_ms();
        let t0 = Instant::now();
        loop {
            if let Ok(st) = status::read(&self.state) {
                if st.updated_ms > since && ok(&st) {
                    return st;
                }
            }
            assert!(
                t0.elapsed() < limit,
                "agent status not as expected within {limit:?}: {:?}\n{}",
                status::read(&self.state).ok(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One 4 KiB O_DIRECT write of `byte` at `offset` of `dev`: how the workload sees a write.
pub fn try_write_direct(dev: &Path, offset: u64, byte: u8) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = open_direct(dev);
    let mut buf = rewind_linux::aligned::AlignedBuf::new(4096);
    buf.fill(byte);
    f.write_all_at(&buf, offset)
}

/// A target with a view tree (failover's loop devices need one) under `work/NAME`.
pub fn site(work: &Path, name: &str) -> Mtd {
    let dir = work.join(name);
    fs::create_dir_all(&dir).expect("site dir");
    let views = dir.join("views");
    Mtd::start_with(&dir, &["--views", views.to_str().expect("utf-8 path")])
}

/// The first live disk's loop device in a promotion's job result.
pub fn live_loop(r: &serde_json::Value) -> PathBuf {
    PathBuf::from(
        r["promotion"]["set"]["disks"][0]["loop_device"]
            .as_str()
            .unwrap_or_else(|| panic!("no live loop device: {r}")),
    )
}

/// The state dir of the reverse-replication agent `mtd` runs for `group`.
pub fn reverse_state(mtd: &Mtd, group: &str) -> PathBuf {
    let st = mtd.rewind_json(&["failover", "status", group]);
    PathBuf::from(
        st["state"]["reverse"]["state_dir"]
            .as_str()
            .unwrap_or_else(|| panic!("group {group} has no reverse replication: {st}")),
    )
}

/// That agent's log.
pub fn reverse_log(mtd: &Mtd, group: &str) -> String {
    fs::read_to_string(reverse_state(mtd, group).join("agent.log")).unwrap_or_default()
}
