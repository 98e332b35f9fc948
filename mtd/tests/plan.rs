//! Recovery plans: parsing with `PATH:LINE:COL` errors, and runs of real `sh -c` boot commands
//! against a fake `PlanOps`. Every run is cleaned up by a guard (which stops its process groups by
//! pid) even when an assertion fails, and every test has its own temporary directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;
use rewind_mtd::plan::{
    Health, MachineState, Mode, Outcome, Plan, PlanOps, PlanRun, PreparedDisk, RunState, RunStatus,
    StepKind,
};

/// Hands out fake NBD URIs and loop devices and records every call.
#[derive(Default)]
struct FakeOps {
    calls: Mutex<Vec<String>>,
}

impl FakeOps {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn disk_names(group: &str) -> anyhow::Result<Vec<String>> {
        match group {
            "db" | "broken" => Ok(vec!["root".into()]),
            "web" | "app" => Ok(vec!["root".into(), "data".into()]),
            _ => bail!("no protection group named {group}"),
        }
    }
}

impl PlanOps for FakeOps {
    fn prepare(
        &self,
        group: &str,
        mode: Mode,
        point: Option<&str>,
    ) -> anyhow::Result<Vec<PreparedDisk>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("prepare {group} {mode} {point:?}"));
        if group == "broken" {
            bail!("point not found");
        }
        Ok(Self::disk_names(group)?
            .into_iter()
            .map(|d| PreparedDisk {
                nbd_uri: format!("nbd://fake/{group}-{d}"),
                loop_device: Some(format!("/dev/fakeloop-{group}-{d}")),
                disk: d,
            })
            .collect())
    }
    fn cleanup(&self, group: &str, mode: Mode) -> anyhow::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("cleanup {group} {mode}"));
        Ok(())
    }
    fn disks(&self, group: &str) -> anyhow::Result<Vec<String>> {
        Self::disk_names(group)
    }
}

/// Cleans the run up when dropped, so no boot process outlives a failed test.
struct Guard(Arc<PlanRun>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.cleanup() {
            eprintln!("cleanup in the test guard: {e:#}");
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rewind-plan-test-")
        .tempdir()
        .expect("temp dir")
}

fn parse(text: &str) -> Plan {
    Plan::parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> String {
    let e = Plan::parse(Path::new("t.toml"), text)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    eprintln!("{e}");
    e
}

fn start(text: &str, mode: Mode, dir: &Path) -> (Arc<FakeOps>, Guard) {
    let ops = Arc::new(FakeOps::default());
    let run = PlanRun::start(
        parse(text),
        ops.clone(),
        mode,
        Some("tag:before".into()),
        &dir.join("logs"),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    (ops, Guard(run))
}

fn wait(run: &PlanRun) -> RunStatus {
    let s = run.wait_for(Duration::from_secs(30), |s| s.state.is_finished());
    assert!(s.state.is_finished(), "the run did not finish: {s:#?}");
    s
}

fn step(s: &RunStatus, kind: StepKind, machine: &str) -> rewind_mtd::plan::Step {
    s.steps
        .iter()
        .find(|st| st.kind == kind && st.machine.as_deref() == Some(machine))
        .unwrap_or_else(|| panic!("no {kind:?} step of {machine}: {s:#?}"))
        .clone()
}

fn pid_of(s: &RunStatus, machine: &str) -> u32 {
    let m = s.machines.iter().find(|m| m.name == machine).unwrap();
    m.pid
        .unwrap_or_else(|| panic!("{machine} has no pid: {s:#?}"))
}

/// Neither the process nor anything in its process group exists any more (reaped, not zombie).
fn gone(pid: u32) -> bool {
    let p = Pid::from_raw(pid as i32);
    kill(p, None) == Err(Errno::ESRCH) && killpg(p, None) == Err(Errno::ESRCH)
}

fn q(p: &Path) -> String {
    p.display().to_string()
}

// ---- the file ----

const EXAMPLE: &str = r#"
name = "shop"

[[boot_group]]
name = "database"
pre = ["sh /etc/rewind/hooks/dns-to-dr.sh"]
post = ["echo db up"]
manual = "Check replication, then run `rewind plan continue`"

[[boot_group.machine]]
name = "db1"
group = "db"
boot = "qemu-system-x86_64 -drive file={nbd:root},format=raw,if=virtio"
health = { console = "login:" }
timeout_secs = 120

[[boot_group]]
name = "web"

[[boot_group.machine]]
name = "web1"
group = "web"
boot = "sh boot.sh {machine} {group} '{nbd:root}' {loop:data} ${{HOME}}"
health = { command = "curl -fsS http://10.0.0.21/health" }
"#;

#[test]
fn the_example_parses() {
    let p = parse(EXAMPLE);
    assert_eq!(p.name, "shop");
    assert_eq!(p.boot_groups.len(), 2);
    let db = &p.boot_groups[0];
    assert_eq!(db.pre, vec!["sh /etc/rewind/hooks/dns-to-dr.sh"]);
    assert_eq!(db.post, vec!["echo db up"]);
    assert!(db
        .manual
        .as_deref()
        .unwrap()
        .starts_with("Check replication"));
    assert_eq!(db.machines[0].health, Health::Console("login:".into()));
    assert_eq!(db.machines[0].timeout, Duration::from_secs(120));
    let web = &p.boot_groups[1].machines[0];
    assert_eq!(web.timeout, Duration::from_secs(300));
    assert_eq!(web.boot.disks(), vec!["root", "data"]);
    p.check_groups(&FakeOps::disk_names).unwrap();
}

#[test]
fn syntax_and_type_errors_have_line_and_column() {
    let e = parse_err("name = \"x\"\n[[boot_group]]\nname = oops\n");
    assert!(e.starts_with("t.toml:3:8: "), "{e}");
    let e = parse_err(
        "name = \"x\"\n[[boot_group]]\nname = \"a\"\n[[boot_group.machine]]\nname = \"m\"\n\
         group = \"db\"\nboot = \"b\"\nhealth = { console = \"x\" }\ntimeout_secs = \"ten\"\n",
    );
    assert!(e.starts_with("t.toml:9:16: "), "{e}");
    // A misspelt key is an error, not a silent default.
    let e = parse_err(
        "name = \"x\"\n[[boot_group]]\nname = \"a\"\n[[boot_group.machine]]\nname = \"m\"\n\
         group = \"db\"\nboot = \"b\"\nhealth = { console = \"x\" }\ntimout_secs = 5\n",
    );
    assert!(e.starts_with("t.toml:9:1: "), "{e}");
    assert!(e.contains("timout_secs"), "{e}");
    // Columns count characters, not bytes.
    let e = parse_err("name = \"é\" oops\n");
    assert!(e.starts_with("t.toml:1:12: "), "{e}");
}

fn one_machine(machine: &str) -> String {
    format!("name = \"x\"\n[[boot_group]]\nname = \"a\"\n[[boot_group.machine]]\n{machine}")
}

#[test]
fn validation_errors_point_at_the_culprit() {
    let e = parse_err(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"run {nbd:root} {ndb:root}\"\nhealth = { console = \"x\" }\n",
    ));
    assert!(e.starts_with("t.toml:7:8: "), "{e}");
    assert!(e.contains("unknown placeholder {ndb:root}"), "{e}");

    let e = parse_err(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"b\"\nhealth = { console = \"x\", command = \"true\" }\n",
    ));
    assert!(e.starts_with("t.toml:8:10: "), "{e}");
    assert!(e.contains("both console and command"), "{e}");

    let e = parse_err(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"b\"\nhealth = {}\n",
    ));
    assert!(e.starts_with("t.toml:8:10: "), "{e}");

    let e = parse_err(&one_machine("name = \"m\"\ngroup = \"db\"\nboot = \"b\"\n"));
    assert!(e.starts_with("t.toml:4:"), "{e}");
    assert!(e.contains("no health check"), "{e}");

    let e = parse_err(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"b\"\nhealth = { console = \"x\" }\n\
         [[boot_group.machine]]\nname = \"m\"\ngroup = \"web\"\nboot = \"b\"\n\
         health = { console = \"x\" }\n",
    ));
    assert!(e.starts_with("t.toml:10:8: "), "{e}");
    assert!(e.contains("machine \"m\" is defined twice"), "{e}");

    let e = parse_err(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"b\"\nhealth = { console = \"x\" }\n\
         timeout_secs = 0\n",
    ));
    assert!(e.starts_with("t.toml:9:16: "), "{e}");

    let e = parse_err(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"b\"\nhealth = { console = \"x\" }\n\
         [[boot_group.machine]]\nname = \"n\"\ngroup = \"db\"\nboot = \"b\"\n\
         health = { console = \"x\" }\n",
    ));
    assert!(e.starts_with("t.toml:11:9: "), "{e}");
    assert!(
        e.contains("\"db\" is already booted by machine \"m\""),
        "{e}"
    );

    let e = parse_err(&format!(
        "{}[[boot_group]]\nname = \"a\"\n",
        one_machine("name = \"m\"\ngroup = \"db\"\nboot = \"b\"\nhealth = { console = \"x\" }\n")
    ));
    assert!(e.contains("boot group \"a\" is defined twice"), "{e}");
    assert!(e.starts_with("t.toml:10:8: "), "{e}");

    let e = parse_err("name = \"x\"\n");
    assert!(e.starts_with("t.toml:1:1: "), "{e}");
    assert!(e.contains("no machines"), "{e}");
}

#[test]
fn unknown_group_or_disk_changes_nothing() {
    let dir = tempdir();
    let ops = Arc::new(FakeOps::default());
    let text = one_machine(
        "name = \"m\"\ngroup = \"nope\"\nboot = \"touch {}\"\nhealth = { console = \"x\" }\n",
    )
    .replace(
        "touch {}",
        &format!("touch {}", q(&dir.path().join("booted"))),
    );
    let plan = parse(&format!(
        "{text}[[boot_group]]\nname = \"b\"\npre = [\"touch {}\"]\n",
        q(&dir.path().join("hooked"))
    ));
    let e = PlanRun::start(
        plan,
        ops.clone(),
        Mode::Test,
        None,
        &dir.path().join("logs"),
    )
    .map(|_| ())
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.starts_with("t.toml:6:9: "), "{e}");
    assert!(e.contains("unknown protection group \"nope\""), "{e}");
    assert!(e.contains("no protection group named nope"), "{e}");

    let plan = parse(&one_machine(
        "name = \"m\"\ngroup = \"db\"\nboot = \"run {loop:data}\"\nhealth = { console = \"x\" }\n",
    ));
    let e = PlanRun::start(
        plan,
        ops.clone(),
        Mode::Test,
        None,
        &dir.path().join("logs"),
    )
    .map(|_| ())
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.starts_with("t.toml:7:8: "), "{e}");
    assert!(e.contains("has no disk \"data\""), "{e}");

    assert!(ops.calls().is_empty(), "{:?}", ops.calls());
    assert!(!dir.path().join("logs").exists());
    assert!(!dir.path().join("booted").exists());
    assert!(!dir.path().join("hooked").exists());
}

// ---- runs ----

#[test]
fn boot_groups_run_in_order_and_the_rto_is_measured() {
    let dir = tempdir();
    let hooks = dir.path().join("hooks.txt");
    let ready = dir.path().join("web-ready");
    let text = format!(
        r#"
name = "shop"
[[boot_group]]
name = "database"
pre = ["echo pre1 >> {hooks}", "echo pre2 $REWIND_BOOT_GROUP $REWIND_MODE >> {hooks}"]
post = ["echo post >> {hooks}"]
[[boot_group.machine]]
name = "db1"
group = "db"
boot = "echo booting {{machine}} from {{nbd:root}} on {{loop:root}}; sleep 0.3; echo 'db1 login:'; exec sleep 30"
health = {{ console = "login:" }}
timeout_secs = 10

[[boot_group]]
name = "web"
pre = ["echo web-pre >> {hooks}"]
[[boot_group.machine]]
name = "web1"
group = "web"
boot = "sleep 0.5; touch {ready}; exec sleep 30"
health = {{ command = "test -f {ready}" }}
timeout_secs = 10
[[boot_group.machine]]
name = "app1"
group = "app"
boot = "echo up; exec sleep 30"
health = {{ console = "up" }}
timeout_secs = 10
"#,
        hooks = q(&hooks),
        ready = q(&ready),
    );
    let (ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Succeeded, "{s:#?}");
    assert_eq!(
        (s.machines_healthy, s.machines_total, s.progress_percent),
        (3, 3, 100)
    );
    assert!(
        s.steps
            .iter()
            .all(|st| st.outcome == Outcome::Ok && st.ended_ms.is_some()),
        "{s:#?}"
    );

    // The second boot group starts only once the first is healthy and its post hook has run.
    let db_healthy = step(&s, StepKind::Health, "db1").ended_ms.unwrap();
    let web_prepare = step(&s, StepKind::Prepare, "web1").started_ms;
    assert!(web_prepare >= db_healthy, "{s:#?}");
    let hooks_text = std::fs::read_to_string(&hooks).unwrap();
    assert_eq!(hooks_text, "pre1\npre2 database test\npost\nweb-pre\n");

    // The RTO runs from the start to the last machine healthy: web1 took >= 0.5 s after db1's
    // >= 0.3 s.
    let last = s
        .machines
        .iter()
        .map(|m| m.healthy_ms.unwrap())
        .max()
        .unwrap();
    assert_eq!(s.rto_ms, Some(last - s.started_ms));
    assert!(s.rto_ms.unwrap() >= 800, "{s:#?}");
    assert!(s.rto_ms.unwrap() < 10_000, "{s:#?}");

    // Placeholders were filled in, and the console was logged.
    let console = std::fs::read_to_string(&s.machines[0].console_log).unwrap();
    assert!(
        console.starts_with(
            "booting db1 from nbd://fake/db-root on /dev/fakeloop-db-root\ndb1 login:\n"
        ),
        "{console}"
    );
    let mut calls = ops.calls();
    calls[1..].sort();
    assert_eq!(
        calls,
        vec![
            "prepare db test Some(\"tag:before\")",
            "prepare app test Some(\"tag:before\")",
            "prepare web test Some(\"tag:before\")",
        ]
    );

    // status.json holds what status() says.
    let saved = rewind_mtd::plan::read_status(&dir.path().join("logs")).unwrap();
    assert_eq!(saved, guard.0.status());

    // Cleanup stops every boot process and undoes every test preparation.
    let pids: Vec<u32> = ["db1", "web1", "app1"]
        .iter()
        .map(|m| pid_of(&s, m))
        .collect();
    assert!(pids.iter().all(|p| !gone(*p)));
    guard.0.cleanup().unwrap();
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
    let mut cleaned: Vec<String> = ops
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("cleanup"))
        .collect();
    cleaned.sort();
    assert_eq!(
        cleaned,
        vec!["cleanup app test", "cleanup db test", "cleanup web test"]
    );
    assert_eq!(guard.0.status().state, RunState::Cleaned);
    // A second cleanup is a no-op.
    guard.0.cleanup().unwrap();
    assert_eq!(ops.calls().len(), 6);
}

fn two_groups(first_boot: &str, first_health: &str, timeout: u64) -> String {
    format!(
        r#"
name = "p"
[[boot_group]]
name = "first"
[[boot_group.machine]]
name = "m1"
group = "db"
boot = "{first_boot}"
health = {first_health}
timeout_secs = {timeout}
[[boot_group.machine]]
name = "ok1"
group = "app"
boot = "echo ready; exec sleep 30"
health = {{ console = "ready" }}
[[boot_group]]
name = "second"
[[boot_group.machine]]
name = "m2"
group = "web"
boot = "echo ready; exec sleep 30"
health = {{ console = "ready" }}
"#
    )
}

#[test]
fn a_failing_boot_command_fails_the_run_and_stops_later_groups() {
    let dir = tempdir();
    let text = two_groups("echo oops; exit 1", "{ console = \"login:\" }", 10);
    let (ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Failed, "{s:#?}");
    let health = step(&s, StepKind::Health, "m1");
    assert_eq!(health.outcome, Outcome::Failed);
    assert!(
        health.message.contains("exit status: 1"),
        "{}",
        health.message
    );
    assert!(s.error.as_deref().unwrap().contains("machine m1"), "{s:#?}");
    // The other machine of the group still came up and stays up for cleanup.
    let ok1 = pid_of(&s, "ok1");
    assert_eq!(s.machines[1].state, MachineState::Healthy);
    assert_eq!(s.machines[2].state, MachineState::Pending);
    assert_eq!(s.progress_percent, 33);
    assert_eq!(s.rto_ms, None);
    assert!(
        !ops.calls().iter().any(|c| c.starts_with("prepare web")),
        "{:?}",
        ops.calls()
    );
    assert!(!gone(ok1));
    guard.0.cleanup().unwrap();
    assert!(gone(ok1) && gone(pid_of(&s, "m1")));
    let mut cleaned: Vec<String> = ops
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("cleanup"))
        .collect();
    cleaned.sort();
    assert_eq!(cleaned, vec!["cleanup app test", "cleanup db test"]);
}

#[test]
fn a_health_check_timeout_fails_the_machine_and_leaves_it_running() {
    let dir = tempdir();
    let text = two_groups("echo booting; exec sleep 30", "{ console = \"login:\" }", 1);
    let (_ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Failed, "{s:#?}");
    let health = step(&s, StepKind::Health, "m1");
    assert!(
        health.message.contains("timed out after 1 s"),
        "{}",
        health.message
    );
    let took = health.ended_ms.unwrap() - health.started_ms;
    assert!((900..5000).contains(&took), "{took}");
    let pid = pid_of(&s, "m1");
    assert!(!gone(pid), "a failed machine is left for cleanup");
    guard.0.cleanup().unwrap();
    assert!(gone(pid));
}

#[test]
fn a_command_health_check_that_never_passes_times_out() {
    let dir = tempdir();
    let text = two_groups("exec sleep 30", "{ command = \"echo no; exit 7\" }", 2);
    let (_ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Failed, "{s:#?}");
    let health = step(&s, StepKind::Health, "m1");
    assert!(
        health.message.contains("timed out after 2 s"),
        "{}",
        health.message
    );
    assert!(
        health.message.contains("exit status: 7"),
        "{}",
        health.message
    );
    // Tried about once a second.
    let log = std::fs::read_to_string(dir.path().join("logs/m1.health.log")).unwrap();
    assert!((2..=4).contains(&log.lines().count()), "{log}");
}

#[test]
fn failing_hooks_and_prepares_fail_the_run() {
    let dir = tempdir();
    let text = two_groups("exec sleep 30", "{ console = \"x\" }", 5).replacen(
        "name = \"first\"",
        "name = \"first\"\npre = [\"true\", \"exit 3\"]",
        1,
    );
    let (ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Failed, "{s:#?}");
    assert!(
        s.error.as_deref().unwrap().contains("exit status: 3"),
        "{s:#?}"
    );
    assert!(ops.calls().is_empty(), "{:?}", ops.calls());
    drop(guard);

    let dir = tempdir();
    let text = two_groups("exec sleep 30", "{ console = \"x\" }", 5).replacen(
        "group = \"db\"",
        "group = \"broken\"",
        1,
    );
    let (ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Failed, "{s:#?}");
    let prep = step(&s, StepKind::Prepare, "m1");
    assert!(prep.message.contains("point not found"), "{}", prep.message);
    guard.0.cleanup().unwrap();
    // Only the group whose prepare succeeded is cleaned up.
    let cleaned: Vec<String> = ops
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("cleanup"))
        .collect();
    assert_eq!(cleaned, vec!["cleanup app test"]);
}

#[test]
fn a_manual_step_waits_for_continue() {
    let dir = tempdir();
    let text = two_groups("echo login:; exec sleep 30", "{ console = \"login:\" }", 10).replacen(
        "name = \"first\"",
        "name = \"first\"\nmanual = \"check the db\"",
        1,
    );
    let (ops, guard) = start(&text, Mode::Planned, dir.path());
    let run = &guard.0;
    let s = run.wait_for(Duration::from_secs(20), |s| s.state == RunState::Waiting);
    assert_eq!(s.state, RunState::Waiting, "{s:#?}");
    assert_eq!(s.manual.as_deref(), Some("check the db"));
    let manual = s
        .steps
        .iter()
        .find(|st| st.kind == StepKind::Manual)
        .unwrap();
    assert_eq!(manual.outcome, Outcome::Waiting);
    let saved = rewind_mtd::plan::read_status(&dir.path().join("logs")).unwrap();
    assert_eq!(saved.state, RunState::Waiting);
    // Still waiting a moment later, and the second group has not started.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run.status().state, RunState::Waiting);
    assert!(!ops.calls().iter().any(|c| c.starts_with("prepare web")));
    let continued_at = rewind_linux::clock::now_ms();
    run.continue_run().unwrap();
    let s = wait(run);
    assert_eq!(s.state, RunState::Succeeded, "{s:#?}");
    assert!(step(&s, StepKind::Prepare, "m2").started_ms >= continued_at);
    assert!(run.continue_run().is_err());
    // Planned mode: cleanup stops the processes but does not undo the promotion.
    let pids: Vec<u32> = ["m1", "ok1", "m2"].iter().map(|m| pid_of(&s, m)).collect();
    run.cleanup().unwrap();
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
    assert!(
        !ops.calls().iter().any(|c| c.starts_with("cleanup")),
        "{:?}",
        ops.calls()
    );
}

#[test]
fn cleanup_stops_a_run_in_progress() {
    let dir = tempdir();
    let text = two_groups("echo booting; exec sleep 30", "{ console = \"never\" }", 60);
    let (ops, guard) = start(&text, Mode::Test, dir.path());
    let run = &guard.0;
    let s = run.wait_for(Duration::from_secs(20), |s| {
        s.machines.iter().filter(|m| m.pid.is_some()).count() == 2
    });
    let pids = [pid_of(&s, "m1"), pid_of(&s, "ok1")];
    let t = Instant::now();
    run.cleanup().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
    let s = run.status();
    assert_eq!(s.state, RunState::Cleaned, "{s:#?}");
    assert!(
        s.steps.iter().all(|st| st.outcome != Outcome::Running),
        "{s:#?}"
    );
    let mut cleaned: Vec<String> = ops
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("cleanup"))
        .collect();
    cleaned.sort();
    assert_eq!(cleaned, vec!["cleanup app test", "cleanup db test"]);
}

#[test]
fn cleanup_kills_what_a_boot_command_left_in_the_background() {
    let dir = tempdir();
    let pidfile: PathBuf = dir.path().join("bg.pid");
    let boot = format!("sleep 30 & echo $! > {}; echo login:; exit 0", q(&pidfile));
    let text = two_groups(&boot, "{ console = \"login:\" }", 10);
    let (_ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Succeeded, "{s:#?}");
    let bg: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(kill(Pid::from_raw(bg as i32), None), Ok(()));
    guard.0.cleanup().unwrap();
    // The background sleep is not our child, so it may linger as a zombie until init reaps it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while kill(Pid::from_raw(bg as i32), None).is_ok()
        && !is_zombie(bg)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        kill(Pid::from_raw(bg as i32), None).is_err() || is_zombie(bg),
        "{bg} still runs"
    );
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn cleanup_kills_a_boot_command_that_ignores_sigterm() {
    let dir = tempdir();
    let boot = "trap '' TERM; echo login:; while :; do sleep 0.1; done";
    let text = two_groups(boot, "{ console = \"login:\" }", 10);
    let (_ops, guard) = start(&text, Mode::Test, dir.path());
    let s = wait(&guard.0);
    assert_eq!(s.state, RunState::Succeeded, "{s:#?}");
    let pids: Vec<u32> = ["m1", "ok1", "m2"].iter().map(|m| pid_of(&s, m)).collect();
    let t = Instant::now();
    guard.0.cleanup().unwrap();
    // SIGKILL after the grace period, for every group at once rather than one after another.
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
}
