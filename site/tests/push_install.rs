//! `rewind-site push-install` against a real OpenSSH server (Debian's openssh-server: `sshd -D`
//! on a free loopback port, its own host key, root logging in with a key made here), installing
//! the rewind-agent package cargo-deb builds from the debug binary under a test root
//! (`--install-root`).
//!
//! systemd is not PID 1 on the test machines, so under the test root the start step runs the
//! installed unit's ExecStart (`%i` the group, its paths under the root) with setsid instead of
//! `systemctl enable --now`; what proves the start is the agent's first WELCOME, which
//! push-install waits for through the site (the target reports the agent connected), then data
//! written on the protected disk and found on the target.
//!
//! Checked: bad input refused before anything is done; an unknown host key refused with nothing
//! installed and nothing protected; with `--accept-new-host-key` the install, settings 0700/0600,
//! WELCOME and replication; a second run does nothing and says so (the same agent runs on); a new
//! package version upgrades and restarts the agent, which connects again, installed by a user
//! other than root through `sudo -n` (refused, with the reason, before it has sudo rights).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::protect::disk_image;
use common::site::{scratch, start_fresh, Backend, Site};
use common::target::{add_target, free_addr, target_with, wait_first_up};
use rewind_benches::harness::{self, bin, kill_and_reap};

const GROUP: &str = "g1";
const HOST: &str = "pushhost";

/// A tool the test cannot do without: a clear failure, never a silent skip.
fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists() || harness::have_tool(path),
        "{path} is missing: install {package} (scripts/test.sh does)"
    );
}

/// `sshd -D -e` on a free loopback port with its own host key and an authorized client key,
/// everything in `dir`; killed by pid on drop.
struct Sshd {
    child: Option<Child>,
    port: u16,
    /// The client's private key.
    key: PathBuf,
    log: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        fs::create_dir_all(dir).unwrap();
        for k in ["host_key", "client_key"] {
            harness::run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", k, "-f"])
                    .arg(dir.join(k)),
            );
        }
        let auth = dir.join("authorized_keys");
        fs::copy(dir.join("client_key.pub"), &auth).unwrap();
        fs::set_permissions(&auth, fs::Permissions::from_mode(0o600)).unwrap();
        // sshd's privilege separation directory (the package's unit makes it at boot).
        fs::create_dir_all("/run/sshd").unwrap();
        let port: u16 = free_addr().rsplit_once(':').unwrap().1.parse().unwrap();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
                 AuthorizedKeysCommand /bin/cat {auth}\nAuthorizedKeysCommandUser root\n\
                 Subsystem sftp internal-sftp\n",
                hk = dir.join("host_key").display(),
                pid = dir.join("sshd.pid").display(),
                auth = auth.display(),
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn /usr/sbin/sshd");
        let mut s = Sshd {
            child: Some(child),
            port,
            key: dir.join("client_key"),
            log,
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.as_mut().unwrap().try_wait() {
                panic!("sshd exited ({st}): {}", s.log_text());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }
}

/// A login user other than root, for the `sudo -n` path: made with useradd (no home, a password
/// field of `*`, so not locked yet no password works), given passwordless sudo by `grant`; the
/// sudoers file and the user are removed on drop.
struct SudoUser {
    name: String,
    sudoers: PathBuf,
}

impl SudoUser {
    fn create() -> SudoUser {
        let name = format!("rwpush{}", std::process::id());
        harness::run_ok(
            Command::new("useradd")
                .args(["--no-create-home", "--shell", "/bin/sh", "--password", "*"])
                .arg(&name),
        );
        SudoUser {
            sudoers: PathBuf::from("/etc/sudoers.d").join(&name),
            name,
        }
    }

    /// Passwordless sudo to root, checked by visudo before it counts.
    fn grant(&self) {
        fs::write(
            &self.sudoers,
            format!("{} ALL=(root) NOPASSWD: ALL\n", self.name),
        )
        .unwrap();
        fs::set_permissions(&self.sudoers, fs::Permissions::from_mode(0o440)).unwrap();
        harness::run_ok(
            Command::new("visudo")
                .arg("-c")
                .arg("-f")
                .arg(&self.sudoers),
        );
    }
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        let _ = Command::new("userdel")
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The agent push-install started under `root` (not a child of the test: setsid under an ssh
/// session), stopped by the pid it wrote, and what it left behind undone, on drop.
struct Installed {
    root: PathBuf,
    group: &'static str,
}

impl Installed {
    fn pid_file(&self) -> PathBuf {
        self.root
            .join(format!("run/rewind-agent@{}.pid", self.group))
    }

    fn pid(&self) -> i32 {
        fs::read_to_string(self.pid_file())
            .expect("the agent's pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    fn state(&self) -> PathBuf {
        self.root.join("var/lib/rewind-agent").join(self.group)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(
            self.root
                .join(format!("var/log/rewind-agent@{}.log", self.group)),
        )
        .unwrap_or_default()
    }
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => !s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let Ok(text) = fs::read_to_string(self.pid_file()) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return;
        };
        let devices: Vec<PathBuf> = harness::read_status(&self.state())
            .map(|s| s.disks.into_iter().map(|d| d.device).collect())
            .unwrap_or_default();
        let p = nix::unistd::Pid::from_raw(pid);
        if alive(pid) {
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
            let t0 = Instant::now();
            while alive(pid) && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let mount = self.root.join("run/rewind/agent").join(self.group);
        for d in &devices {
            harness::loopdev::detach_if_backed_under(d, &mount);
        }
        harness::umount_lazy(&mount);
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The rewind-agent package from the debug binary (as benches/tests/packaging.rs builds it),
/// in `out`, at `version` if given.
fn build_deb(out: &Path, version: Option<&str>) -> PathBuf {
    let agent = bin("rewind-agent");
    // cargo-deb takes the man pages and completions from the profile's directory.
    let docs = agent.parent().unwrap().join("docs/rewind-agent");
    harness::run_ok(Command::new(&agent).env("REWIND_GENERATE_DOCS", &docs));
    let mut c = Command::new("cargo");
    c.current_dir(workspace())
        .args([
            "deb",
            "-p",
            "rewind-agent",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
        ])
        .arg("-o")
        .arg(out);
    if let Some(v) = version {
        c.args(["--deb-version", v]);
    }
    harness::run_ok(&mut c);
    fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}", out.display()))
}

/// stdout and stderr (shown, for the test's log).
fn text(o: &Output) -> (String, String) {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    eprintln!("push-install ({}):\n{out}{err}", o.status);
    (out, err)
}

/// `push-install` with the test's flags and `extra`.
fn push(site: &Site, sshd: &Sshd, image: &Path, deb: &Path, root: &Path, extra: &[&str]) -> Output {
    push_group(site, sshd, image, deb, root, GROUP, extra)
}

fn push_group(
    site: &Site,
    sshd: &Sshd,
    image: &Path,
    deb: &Path,
    root: &Path,
    group: &str,
    extra: &[&str],
) -> Output {
    push_as(site, sshd, "root", image, deb, root, group, extra)
}

/// `push-install` logging in as `user` (anyone but root goes through `sudo -n`).
#[allow(clippy::too_many_arguments)]
fn push_as(
    site: &Site,
    sshd: &Sshd,
    user: &str,
    image: &Path,
    deb: &Path,
    root: &Path,
    group: &str,
    extra: &[&str],
) -> Output {
    let ssh = format!("{user}@127.0.0.1:{}", sshd.port);
    let disk = format!("d0={}", image.display());
    let mut args = vec![
        "push-install",
        HOST,
        "--ssh",
        &ssh,
        "--identity",
        sshd.key.to_str().unwrap(),
        "--group",
        group,
        "--disk",
        &disk,
        "--policy",
        "gold",
        "--package",
        deb.to_str().unwrap(),
        "--install-root",
        root.to_str().unwrap(),
        "--wait",
        "90s",
    ];
    args.extend_from_slice(extra);
    site.cli(&args)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn push_install_over_ssh_installs_starts_and_is_idempotent() {
    require("/usr/sbin/sshd", "openssh-server");
    require("ssh", "openssh-client");
    require("ssh-keygen", "openssh-client");
    require("dpkg-deb", "dpkg");
    let cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        cargo_deb,
        "cargo-deb is missing: cargo install cargo-deb (scripts/test.sh does)"
    );
    assert!(
        nix::unistd::geteuid().is_root() && Path::new("/dev/fuse").exists(),
        "push-install's test starts a real agent: it needs root and /dev/fuse"
    );

    let tmp = scratch();
    let w = tmp.path();
    let deb1 = build_deb(&w.join("deb1"), None);
    let deb2 = build_deb(&w.join("deb2"), Some("99.0.0-1"));
    let sshd = Sshd::start(&w.join("sshd"));
    let site = start_fresh(w, &Backend::Sqlite);
    // (A view tree, to attach g1/d0 there and compare it with the source.)
    let views = w.join("views");
    let t1 = target_with(w, &site.state, "t1", &["--views", views.to_str().unwrap()]);
    add_target(&site, "t1", &t1);
    site.ok(&[
        "policy",
        "create",
        "gold",
        "--rpo",
        "1m",
        "--retention",
        "1h",
    ]);
    wait_first_up(&site, "t1");
    let image = disk_image(w);
    let root = w.join("root");
    let installed = Installed {
        root: root.clone(),
        group: GROUP,
    };
    let broken = Installed {
        root: root.clone(),
        group: "g2",
    };

    // Bad input: refused before any connection, with what and where.
    let mut bad = site.cli(&[
        "push-install",
        HOST,
        "--ssh",
        "pushhost",
        "--group",
        GROUP,
        "--disk",
        "d0=/x",
        "--policy",
        "gold",
        "--package",
        "/nonexistent.deb",
    ]);
    assert!(
        text(&bad).1.contains("give USER@HOST[:PORT]"),
        "{}",
        text(&bad).1
    );
    bad = push(&site, &sshd, Path::new("rel.img"), &deb1, &root, &[]);
    assert!(!bad.status.success());
    assert!(text(&bad).1.contains("is not absolute"), "{}", text(&bad).1);
    bad = push_group(&site, &sshd, &image, &deb1, &root, "g/1", &[]);
    assert!(text(&bad).1.contains("group name"), "{}", text(&bad).1);

    // An unknown host key: refused, nothing installed, nothing protected.
    let o = push(&site, &sshd, &image, &deb1, &root, &[]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        err.contains("host key of root@127.0.0.1") && err.contains("--accept-new-host-key"),
        "{err}"
    );
    assert!(!root.exists(), "something was installed");
    assert_eq!(site.json(&["groups"]), serde_json::json!([]));
    // Bad input made no site job; the refused key failed one, at its first step.
    let jobs = push_jobs(&site);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (jobs[0]["state"].as_str(), jobs[0]["done"].as_i64()),
        (Some("failed"), Some(0))
    );
    let why = jobs[0]["detail"].as_str().unwrap();
    assert!(
        why.starts_with("connect: ") && why.contains("host key"),
        "{why}"
    );

    // Accepted: every step, the agent started and connected.
    let o = push(
        &site,
        &sshd,
        &image,
        &deb1,
        &root,
        &["--accept-new-host-key"],
    );
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "{out}\n{err}\nagent log:\n{}\nsshd log:\n{}",
        installed.log_text(),
        sshd.log_text()
    );
    for step in [
        "[1/7] connect: root@127.0.0.1",
        "(host key new, learnt)",
        "[2/7] protect: group g1 on target t1 (new)",
        "[3/7] copy package",
        "[4/7] install: rewind-agent 0.",
        "[5/7] settings: agent.toml, ca.crt, pushhost.crt, pushhost.key written",
        "[6/7] start: started (the unit's ExecStart",
        "[7/7] welcome: the agent of g1 is connected to target t1",
    ] {
        assert!(out.contains(step), "no {step:?} in:\n{out}");
    }
    // The site job of this run: done, 7 of 7 steps, the last one named.
    let job = push_jobs(&site).pop().unwrap();
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (job["done"].as_i64(), job["total"].as_i64()),
        (Some(7), Some(7))
    );
    assert!(
        job["detail"].as_str().unwrap().starts_with("welcome: "),
        "{job}"
    );
    assert!(
        job["owner"].as_str().unwrap().starts_with("client:"),
        "{job}"
    );
    let known = fs::read_to_string(site.state.join("ssh/known_hosts")).unwrap();
    assert!(
        known.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{known}"
    );
    assert!(root.join("usr/bin/rewind-agent").exists());
    let settings = root.join("etc/rewind/agent").join(GROUP);
    assert_eq!(mode(&root.join("etc/rewind/agent")), 0o700);
    assert_eq!(mode(&settings), 0o700);
    for f in ["agent.toml", "ca.crt", "pushhost.crt", "pushhost.key"] {
        assert_eq!(mode(&settings.join(f)), 0o600, "{f}");
    }
    let toml = fs::read_to_string(settings.join("agent.toml")).unwrap();
    assert!(
        toml.contains(&format!("{}/pushhost.key", settings.display())),
        "{toml}"
    );
    let pid = installed.pid();
    assert!(alive(pid), "agent {pid} is not running");
    let agents = site.json(&["agents"]);
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == HOST && a["group"] == GROUP),
        "{agents}"
    );

    // Replication: what is written on the protected disk is on the target.
    let link = root.join("dev/rewind").join(GROUP).join("d0");
    harness::write_random_mib(&link, 2, 1, 21);
    harness::wait_caught_up_at(&installed.state(), Duration::from_secs(120), &|| {
        installed.log_text()
    });
    let live = w.join("live.img");
    fs::write(&live, fs::read(&link).unwrap()).unwrap();
    let on_t1 = t1.mtd.rewind(&["attach", "g1/d0"]).trim().to_string();
    harness::assert_same(Path::new(&on_t1), &live);
    t1.mtd.rewind(&["detach", &on_t1]);

    // Again, the host key known now: nothing to do, the same agent runs on.
    let o = push(&site, &sshd, &image, &deb1, &root, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("(host key known)"), "{out}");
    assert!(out.contains("[3/7] copy package: skipped"), "{out}");
    assert!(out.contains("[6/7] start: nothing to do"), "{out}");
    assert!(
        out.contains("push-install pushhost: nothing to do"),
        "{out}"
    );
    assert_eq!(installed.pid(), pid);
    assert!(alive(pid));

    // With --json: one object per step, its percent rising to 100, then the summary.
    let o = push(&site, &sshd, &image, &deb1, &root, &["--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 8, "{out}");
    let percents: Vec<u64> = lines[..7]
        .iter()
        .map(|l| l["percent"].as_u64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] < w[1]), "{percents:?}");
    assert_eq!(percents[6], 100);
    assert_eq!(lines[0]["name"], "connect");
    assert_eq!(lines[6]["name"], "welcome");
    assert_eq!(lines[7]["changed"], false, "{out}");
    assert_eq!(lines[7]["host"], HOST);
    let job = push_jobs(&site).pop().unwrap();
    assert_eq!(lines[7]["job"], job["id"]);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(installed.pid(), pid);

    // A login other than root without sudo rights: refused at the first step, saying what the
    // user lacks; nothing changed on the host.
    let user = SudoUser::create();
    let o = push_as(&site, &sshd, &user.name, &image, &deb2, &root, GROUP, &[]);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        err.contains(&format!(
            "{} cannot run commands as root without a password",
            user.name
        )),
        "{err}\nsshd log:\n{}",
        sshd.log_text()
    );
    assert!(
        fs::read_to_string(root.join("var/lib/rewind-push/rewind-agent.version"))
            .unwrap()
            .starts_with("0."),
        "the package changed"
    );
    assert_eq!(installed.pid(), pid);
    assert!(alive(pid));

    // A new version, by that user with passwordless sudo: every root step goes through
    // `sudo -n`; upgraded, the agent restarted (a new pid) and connected again.
    user.grant();
    let o = push_as(&site, &sshd, &user.name, &image, &deb2, &root, GROUP, &[]);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "{out}\n{err}\nagent log:\n{}",
        installed.log_text()
    );
    assert!(out.contains("upgraded from 0."), "{out}");
    assert!(out.contains("to 99.0.0-1"), "{out}");
    assert!(out.contains("[6/7] start: restarted"), "{out}");
    assert!(out.contains("[7/7] welcome"), "{out}");
    let pid2 = installed.pid();
    assert_ne!(pid2, pid);
    assert!(!alive(pid), "the old agent {pid} still runs");
    assert!(alive(pid2));
    // The WELCOME push-install saw was the new agent's: its own status says it is connected.
    let t0 = Instant::now();
    loop {
        let st = harness::read_status(&installed.state());
        if st
            .as_ref()
            .is_ok_and(|s| s.pid == pid2 as u32 && s.connected)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "agent {pid2} is not connected: {st:?}\n{}",
            installed.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        fs::read_to_string(root.join("var/lib/rewind-push/rewind-agent.version"))
            .unwrap()
            .trim(),
        "99.0.0-1"
    );

    // An agent that cannot start (its disk does not exist): the start step fails and says why,
    // with the end of the agent's log.
    let o = push_group(
        &site,
        &sshd,
        Path::new("/nonexistent/disk.img"),
        &deb2,
        &root,
        broken.group,
        &[],
    );
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("[5/7] settings"), "{out}");
    assert!(err.contains("the agent exited at once"), "{err}");
    assert!(err.contains("/nonexistent/disk.img"), "{err}");
    // Its site job failed at the start step, with the reason.
    let job = push_jobs(&site).pop().unwrap();
    assert_eq!(
        (job["state"].as_str(), job["done"].as_i64()),
        (Some("failed"), Some(5))
    );
    let why = job["detail"].as_str().unwrap();
    assert!(
        why.starts_with("start: ") && why.contains("/nonexistent/disk.img"),
        "{why}"
    );
}

/// The site's push-install jobs, oldest first (`rewind-site jobs --json`).
fn push_jobs(site: &Site) -> Vec<serde_json::Value> {
    let all = site.json(&["jobs"]);
    all.as_array()
        .unwrap_or_else(|| panic!("{all}"))
        .iter()
        .filter(|j| j["kind"] == "push-install")
        .cloned()
        .collect()
}
