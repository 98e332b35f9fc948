//! One machine of a boot group: prepare its protection group, fill in its boot command, start it,
//! and wait for its health check. Runs on its own thread, beside the group's other machines.

use std::fs::OpenOptions;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::console;
use super::file::{BootGroup, Health, Machine};
use super::runner::{console_log, health_log, PlanRun};
use super::status::{MachineState, Outcome, StepKind};
use super::template::Values;
use rewind_linux::clock::now_ms;
use rewind_linux::process::{self, Finished, POLL};

/// A command health check is tried this often.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// After a boot command exits, how long the console reader gets to finish its last lines.
const CONSOLE_DRAIN: Duration = Duration::from_secs(1);
/// A health command try that the machine's timeout stopped.
const CUT_OFF: &str = "still running at the timeout";

impl PlanRun {
    /// Boot one machine and wait until it is healthy. Err is the reason it failed; the machine
    /// status and its steps say the same. A failed machine is left as it is for `cleanup`.
    pub(crate) fn boot_machine(&self, bg: &BootGroup, m: &Machine) -> Result<(), String> {
        let result = self.boot_and_check(bg, m);
        self.set_machine(&m.name, |s| match &result {
            Ok(()) => {
                s.state = MachineState::Healthy;
                s.healthy_ms = Some(now_ms());
            }
            Err(_) => s.state = MachineState::Failed,
        });
        result.map_err(|e| format!("machine {}: {e}", m.name))
    }

    fn boot_and_check(&self, bg: &BootGroup, m: &Machine) -> Result<(), String> {
        let step_of = |kind, msg: &str| self.begin_step(kind, Some(&bg.name), Some(&m.name), msg);
        let fail = |step, e: String| {
            self.end_step(step, Outcome::Failed, e.clone());
            Err(e)
        };

        // Prepare the disks.
        self.set_machine(&m.name, |s| s.state = MachineState::Preparing);
        let step = step_of(StepKind::Prepare, &format!("prepare group {}", m.group));
        if self.cancelled.load(Ordering::SeqCst) {
            return fail(step, "cancelled by cleanup".into());
        }
        let disks = match self.ops.prepare(&m.group, self.mode, self.point.as_deref()) {
            Ok(d) => d,
            Err(e) => return fail(step, format!("prepare group {}: {e:#}", m.group)),
        };
        self.prepared
            .lock()
            .expect("plan prepared lock")
            .push(m.group.clone());
        let listed: Vec<String> = disks
            .iter()
            .map(|d| format!("{}={}", d.disk, d.nbd_uri))
            .collect();
        self.end_step(
            step,
            Outcome::Ok,
            format!("group {}: {}", m.group, listed.join(" ")),
        );

        // Start the boot command.
        let step = step_of(StepKind::Boot, "start the boot command");
        let values = Values {
            group: &m.group,
            machine: &m.name,
            disks: &disks,
        };
        let cmd = match m.boot.render(&values) {
            Ok(c) => c,
            Err(e) => return fail(step, e),
        };
        let log_path = console_log(&self.log_dir, &m.name);
        let wanted = match &m.health {
            Health::Console(line) => Some(line.clone()),
            Health::Command(_) => None,
        };
        let (read, write) = match console::pipe() {
            Ok(p) => p,
            Err(e) => return fail(step, format!("making the console pipe: {e}")),
        };
        let watch = match console::spawn_reader(read, &log_path, wanted) {
            Ok(w) => w,
            Err(e) => return fail(step, format!("console log {}: {e}", log_path.display())),
        };
        let pid = {
            let mut command = process::shell(&cmd);
            let write2 = match write.try_clone() {
                Ok(w) => w,
                Err(e) => return fail(step, format!("making the console pipe: {e}")),
            };
            self.env(&mut command, bg, m)
                .stdout(Stdio::from(write))
                .stderr(Stdio::from(write2));
            // The boot list is locked across the check and the spawn, so that `cleanup` either
            // finds this process in the list or has already cancelled before it started.
            let mut boots = self.boots.lock().expect("plan boots lock");
            if self.cancelled.load(Ordering::SeqCst) {
                return fail(step, "cancelled by cleanup".into());
            }
            match command.spawn() {
                Ok(child) => {
                    let pid = child.id();
                    boots.push(child);
                    pid
                }
                Err(e) => return fail(step, format!("cannot start sh: {e}")),
            }
            // `command` drops here with our copies of the pipe's write end, so the console
            // reader sees end of file once the boot command's processes have all gone.
        };
        let started = Instant::now();
        self.set_machine(&m.name, |s| {
            s.state = MachineState::Booting;
            s.pid = Some(pid);
        });
        self.end_step(
            step,
            Outcome::Ok,
            format!("pid {pid}: {cmd} (console in {})", log_path.display()),
        );

        // Wait for the health check.
        let what = match &m.health {
            Health::Console(line) => format!("console line containing {line:?}"),
            Health::Command(c) => format!("health command `{c}`"),
        };
        let step = step_of(StepKind::Health, &format!("wait for the {what}"));
        let deadline = started + m.timeout;
        let mut next_try = Instant::now();
        let mut last_try: Option<String> = None;
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return fail(step, "cancelled by cleanup".into());
            }
            let healthy = match &m.health {
                Health::Console(_) => watch.matched.load(Ordering::SeqCst),
                Health::Command(c) if Instant::now() >= next_try => {
                    next_try = Instant::now() + HEALTH_INTERVAL;
                    match self.health_command(bg, m, c, deadline) {
                        Ok(()) => true,
                        // A try cut off by the deadline says less than the one before it.
                        Err(e) if e == CUT_OFF && last_try.is_some() => false,
                        Err(e) => {
                            last_try = Some(e);
                            false
                        }
                    }
                }
                Health::Command(_) => false,
            };
            if healthy {
                let ms = started.elapsed().as_millis();
                self.end_step(step, Outcome::Ok, format!("healthy after {ms} ms ({what})"));
                return Ok(());
            }
            // A boot command that fails is a failed machine. One that exits 0 may have started
            // the machine in the background (`virsh start`), so the health check goes on.
            if let Some(st) = self.boot_exit(pid) {
                if !st.success() {
                    wait_until(CONSOLE_DRAIN, || watch.closed.load(Ordering::SeqCst));
                    if watch.matched.load(Ordering::SeqCst) {
                        continue;
                    }
                    return fail(
                        step,
                        format!("boot command exited before the machine was healthy: {st}"),
                    );
                }
            }
            if Instant::now() >= deadline {
                let mut msg = format!(
                    "timed out after {} s waiting for the {what}",
                    m.timeout.as_secs()
                );
                if let Some(last) = last_try {
                    msg.push_str(&format!(" (last try: {last})"));
                }
                return fail(step, msg);
            }
            std::thread::sleep(POLL);
        }
    }

    /// The boot process's exit status, once it has exited (it is reaped then; `cleanup` still
    /// signals its process group for what it left running).
    fn boot_exit(&self, pid: u32) -> Option<ExitStatus> {
        let mut boots = self.boots.lock().expect("plan boots lock");
        let child = boots.iter_mut().find(|c| c.id() == pid)?;
        child.try_wait().ok().flatten()
    }

    /// One try of a command health check, stopped at `deadline`; output goes to
    /// `LOG_DIR/MACHINE.health.log`.
    fn health_command(
        &self,
        bg: &BootGroup,
        m: &Machine,
        cmd: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        let path = health_log(&self.log_dir, &m.name);
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("opening {}: {e}", path.display()))
        };
        let mut c = process::shell(cmd);
        self.env(&mut c, bg, m)
            .stdout(Stdio::from(open()?))
            .stderr(Stdio::from(open()?));
        match process::run_until(&mut c, Some(deadline), &self.cancelled) {
            Ok(Finished::Exited(st)) if st.success() => Ok(()),
            Ok(Finished::Exited(st)) => Err(st.to_string()),
            Ok(Finished::TimedOut) => Err(CUT_OFF.into()),
            Ok(Finished::Cancelled) => Err("cancelled by cleanup".into()),
            Err(e) => Err(format!("cannot start sh: {e}")),
        }
    }

    /// What boot commands and health checks find in their environment.
    fn env<'c>(&self, c: &'c mut Command, bg: &BootGroup, m: &Machine) -> &'c mut Command {
        c.env("REWIND_PLAN", &self.plan.name)
            .env("REWIND_MODE", self.mode.as_str())
            .env("REWIND_POINT", self.point.as_deref().unwrap_or(""))
            .env("REWIND_BOOT_GROUP", &bg.name)
            .env("REWIND_MACHINE", &m.name)
            .env("REWIND_GROUP", &m.group)
    }
}

/// Poll `done` until it holds or `limit` passes.
fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    // Plan files cap their timeouts; saturate anyway rather than panic.
    let end = Instant::now()
        .checked_add(limit)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    while !done() && Instant::now() < end {
        std::thread::sleep(POLL);
    }
}
