//! What a newcomer running the README by hand tripped over (issue 18): daemons started with
//! relative paths (from their own working directory) must detach every loop device they
//! attached, so that change-point and the failback round trip work and leave nothing behind;
//! and the rough edges of the CLI around failover.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const CATCH_UP: Duration = Duration::from_secs(120);

/// `rewind-mtd serve` started in `DIR` with every path flag relative to it, as a newcomer
/// would type it: `--data-dir data --views views --unix mtd.sock ...`.
struct RelSite {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl RelSite {
    fn start(work: &Path, name: &str, views: bool) -> RelSite {
        let dir = work.join(name);
        fs::create_dir_all(&dir).expect("site dir");
        let log = dir.join("mtd.log");
        let mut s = RelSite {
            child: None,
            dir,
            log,
        };
        let logf = fs::File::create(&s.log).expect("mtd log");
        let mut cmd = Command::new(bin("rewind-mtd"));
        cmd.current_dir(&s.dir).args([
            "serve",
            "--data-dir",
            "data",
            "--unix",
            "mtd.sock",
            "--nbd-listen",
            "none",
            "--nbd-unix",
            "nbd.sock",
            "--control",
            "control.sock",
            "--ready-file",
            "ready",
        ]);
        if views {
            cmd.args(["--views", "views"]);
        }
        s.child = Some(
            cmd.env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .expect("spawn rewind-mtd"),
        );
        let log = || fs::read_to_string(&s.log).unwrap_or_default();
        let ready = s.dir.join("ready");
        let child = s.child.as_mut().unwrap();
        wait_for_path(child, &ready, Duration::from_secs(60), "rewind-mtd", &log);
        s
    }

    fn target(&self) -> String {
        format!("unix:{}", self.dir.join("mtd.sock").display())
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rewind_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("rewind"));
        c.arg("--control")
            .arg(self.dir.join("control.sock"))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn rewind(&self, args: &[&str]) -> String {
        let out = self.rewind_cmd(args).output().expect("run rewind");
        assert!(
            out.status.success(),
            "rewind {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn rewind_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.rewind(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("rewind {args:?}: {e}: {text}"))
    }

    fn rewind_fails(&self, args: &[&str]) -> String {
        let out = self.rewind_cmd(args).output().expect("run rewind");
        assert!(
            !out.status.success(),
            "rewind {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// SIGTERM and wait for a clean stop.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            assert!(
                sigterm_and_wait(&mut c, Duration::from_secs(60)).is_some(),
                "rewind-mtd did not stop on SIGTERM:\n{}",
                self.log_text()
            );
        }
    }
}

impl Drop for RelSite {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm_and_wait(&mut c, Duration::from_secs(30));
        }
        umount_lazy(&self.dir.join("views"));
    }
}

/// Loop devices whose backing file names `token` (a group name unique to the test): after a
/// lazy unmount of the view tree the kernel shows the file relative to the tree's root, so the
/// group name is what identifies them.
fn loops_naming(token: &str) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["-l", "-n", "-O", "NAME,BACK-FILE"])
        .output()
        .expect("losetup -l");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(token))
        .map(str::to_string)
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().to_string();
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}

/// Undoes what a failed test left: loop devices over the test's files, mounts under its dir.
struct Leftovers {
    dir: PathBuf,
    token: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for l in loops_naming(&self.token) {
            if let Some(dev) = l.split_whitespace().next() {
                let _ = Command::new("losetup").arg("-d").arg(dev).status();
            }
        }
        for l in mounts_under(&self.dir) {
            if let Some(m) = l.split_whitespace().nth(1) {
                umount_lazy(Path::new(m));
            }
        }
    }
}

/// Nothing the daemons made is left: no loop device over a file of `token`'s group, no mount
/// under `dir`.
fn assert_nothing_left(dir: &Path, token: &str, logs: &[&RelSite]) {
    // The kernel lets go of a detached loop device's file a moment later.
    let t0 = Instant::now();
    while !loops_naming(token).is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let loops = loops_naming(token);
    let mounts = mounts_under(dir);
    let logs: String = logs.iter().map(|s| s.log_text()).collect();
    assert!(
        loops.is_empty() && mounts.is_empty(),
        "left behind: loop devices {loops:?}, mounts {mounts:?}\n--- daemon logs ---\n{logs}"
    );
}

fn make_disk(path: &Path, mib: u64) {
    fs::File::create(path)
        .and_then(|f| f.set_len(mib * MIB))
        .expect("disk image");
}

/// A group name no other test (or leftover of one) uses.
fn unique_group(what: &str) -> String {
    format!("{what}{}", std::process::id())
}

#[test]
fn relative_paths_change_point_and_clean_stop() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let group = unique_group("rel");
    let _left = Leftovers {
        dir: w.to_path_buf(),
        token: group.clone(),
    };
    let mut dr = RelSite::start(w, "dr", true);
    let src = w.join("src.img");
    make_disk(&src, 32);
    let mut agent = Agent::start(w, &group, &[("d", &src)], &dr.target(), &[]);
    let dev = agent.link("d");
    write_random_mib(&dev, 0, 8, 1);
    let t1 = agent.tag("t1", &[]);
    agent.wait_caught_up(CATCH_UP);
    fs::copy(&src, w.join("at-t1.img")).unwrap();
    write_random_mib(&dev, 4, 8, 2);
    let t2 = agent.tag("t2", &[]);
    agent.wait_caught_up(CATCH_UP);
    fs::copy(&src, w.join("at-t2.img")).unwrap();
    agent.stop();

    let r = dr.rewind_json(&["failover", "unplanned", &group, "--point", "tag:t1"]);
    assert_eq!(r["promotion"]["set"]["seq"].as_u64(), Some(t1), "{r}");
    let first = live_loop(&r);
    assert_same(&first, &w.join("at-t1.img"));
    let r = dr.rewind_json(&["failover", "change-point", &group, "--point", "tag:t2"]);
    assert_eq!(r["promotion"]["set"]["seq"].as_u64(), Some(t2), "{r}");
    let live = live_loop(&r);
    assert_same(&live, &w.join("at-t2.img"));
    // The first live disk's loop device is really gone (not just said to be).
    let st = dr.rewind_json(&["failover", "status", &group]);
    assert_eq!(
        st["state"]["promotion"]["set"]["disks"][0]["loop_device"],
        live.to_str().unwrap(),
        "{st}"
    );
    assert_eq!(loops_naming(&group).len(), 1, "{:?}", loops_naming(&group));
    drop(agent);
    dr.stop();
    assert_nothing_left(w, &group, &[&dr]);
}

/// The README's round trip with two sites started with relative paths: planned failover to B,
/// reverse to A, failback to A, reverse to B; after both daemons stop nothing is left.
#[test]
fn relative_paths_failback_round_trip_leaves_nothing() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let group = unique_group("fb");
    let _left = Leftovers {
        dir: w.to_path_buf(),
        token: group.clone(),
    };
    let mut a = RelSite::start(w, "site-a", true);
    let mut b = RelSite::start(w, "site-b", true);
    let src = w.join("src.img");
    make_disk(&src, 32);
    fs::create_dir_all(w.join("source")).unwrap();
    let mut agent = Agent::start(
        &w.join("source"),
        &group,
        &[("root", &src)],
        &b.target(),
        &[],
    );
    write_random_mib(&agent.link("root"), 0, 8, 1);
    agent.wait_caught_up(CATCH_UP);

    let r = b.rewind_json(&["failover", "planned", &group]);
    assert_same(&live_loop(&r), &src);
    b.rewind(&["failover", "commit", &group]);
    agent.kill9();
    drop(agent);

    let reverse_agent = format!("rewind-reverse-{group}");
    a.rewind(&[
        "adopt",
        &group,
        "--agent",
        &reverse_agent,
        "--disk",
        &format!("root={}", src.display()),
    ]);
    let links_b = w.join("links-b");
    b.rewind_json(&[
        "reverse",
        &group,
        "--to",
        &a.target(),
        "--links-dir",
        links_b.to_str().unwrap(),
    ]);
    let dev_b = links_b.join(&group).join("root");
    let state_b = reverse_state_of(&b, &group);
    wait_caught_up_at(&state_b, CATCH_UP, &|| b.log_text());
    write_random_mib(&dev_b, 10, 2, 2);
    wait_caught_up_at(&state_b, CATCH_UP, &|| b.log_text());

    let r = a.rewind_json(&["failover", "planned", &group]);
    assert_same(&live_loop(&r), &dev_b);
    a.rewind(&["failover", "commit", &group]);
    b.rewind(&["adopt", &group, "--agent", &reverse_agent, "--from-live"]);
    let links_a = w.join("links-a");
    a.rewind_json(&[
        "reverse",
        &group,
        "--to",
        &b.target(),
        "--links-dir",
        links_a.to_str().unwrap(),
    ]);
    let dev_a = links_a.join(&group).join("root");
    let state_a = reverse_state_of(&a, &group);
    wait_caught_up_at(&state_a, CATCH_UP, &|| a.log_text());
    write_random_mib(&dev_a, 20, 2, 3);
    wait_caught_up_at(&state_a, CATCH_UP, &|| a.log_text());

    a.stop();
    b.stop();
    assert_nothing_left(w, &group, &[&a, &b]);
}

fn reverse_state_of(site: &RelSite, group: &str) -> PathBuf {
    let st = site.rewind_json(&["failover", "status", group]);
    PathBuf::from(
        st["state"]["reverse"]["state_dir"]
            .as_str()
            .unwrap_or_else(|| panic!("group {group} has no reverse replication: {st}")),
    )
}

/// A site started without `--views` can be failed over to, but its live disks are NBD-only and
/// reverse replication is impossible: the promotion says so. The job's progress lines come out
/// before its result when stdout and stderr share one file.
#[test]
fn promotion_without_a_view_tree_warns_and_progress_comes_first() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let group = unique_group("nv");
    let _left = Leftovers {
        dir: w.to_path_buf(),
        token: group.clone(),
    };
    let mut dr = RelSite::start(w, "dr", false);
    let src = w.join("src.img");
    make_disk(&src, 16);
    let mut agent = Agent::start(w, &group, &[("d", &src)], &dr.target(), &[]);
    write_random_mib(&agent.link("d"), 0, 4, 1);
    agent.wait_caught_up(CATCH_UP);

    // stdout and stderr into one file, as `rewind ... >out 2>&1` does.
    let out_path = w.join("planned.out");
    let out = fs::File::create(&out_path).unwrap();
    let st = dr
        .rewind_cmd(&["failover", "planned", &group])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .expect("rewind failover planned");
    let text = fs::read_to_string(&out_path).unwrap();
    assert!(st.success(), "{text}\n{}", dr.log_text());
    let progress = text
        .find("asking the source agent to drain")
        .unwrap_or_else(|| panic!("no progress line in:\n{text}"));
    let result = text
        .find("live disks of")
        .unwrap_or_else(|| panic!("no result in:\n{text}"));
    assert!(progress < result, "progress after the result:\n{text}");
    assert!(
        text.contains("no view tree") && text.contains("--views"),
        "no word about the missing view tree:\n{text}"
    );
    let st = dr.rewind_json(&["failover", "status", &group]);
    assert!(
        st["state"]["promotion"]["set"]["disks"][0]["loop_device"].is_null(),
        "{st}"
    );
    agent.kill9();
    drop(agent);
    // Reverse replication is refused, as the promotion said.
    dr.rewind(&["failover", "commit", &group]);
    let e = dr.rewind_fails(&["reverse", &group, "--to", "unix:/nonexistent.sock"]);
    assert!(e.contains("--views"), "{e}");
    dr.stop();
}

/// An agent protecting an empty disk: the initial sync sends nothing, so `rewind points` says
/// the group has no points yet (and why) rather than a range of dashes; and while the regions
/// the sync covered wait for the clear pass, `rewind-agent status` says they are acknowledged
/// rather than showing "caught up" beside dirty regions with no word.
#[test]
fn empty_disk_points_and_status_after_the_initial_sync() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let group = unique_group("empty");
    let _left = Leftovers {
        dir: w.to_path_buf(),
        token: group.clone(),
    };
    let mut dr = RelSite::start(w, "dr", false);
    let src = w.join("src.img");
    make_disk(&src, 64);
    let mut agent = Agent::start(w, &group, &[("d", &src)], &dr.target(), &[]);
    // Look at the status while dirty regions wait for their clear pass after catching up.
    let t0 = Instant::now();
    let mut seen = None;
    while seen.is_none() && t0.elapsed() < CATCH_UP {
        let out = Command::new(bin("rewind-agent"))
            .arg("status")
            .arg("--state-dir")
            .arg(&agent.state)
            .output()
            .expect("rewind-agent status");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let dirty = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("dirty regions: "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        if text.contains("(caught up)") && dirty.is_some_and(|n| n > 0) {
            seen = Some(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = seen.expect("never saw the agent caught up with dirty regions left");
    let line = text
        .lines()
        .find(|l| l.contains("dirty regions"))
        .unwrap_or_default();
    assert!(
        line.contains("acknowledged") && line.contains("clear"),
        "caught up, with dirty regions and no word why:\n{text}"
    );
    agent.wait_caught_up(CATCH_UP);
    let points = dr.rewind(&["points", &group]);
    assert!(
        points.contains("no points yet") && points.contains("empty"),
        "{points}"
    );
    agent.stop();
    dr.stop();
}
