//! [`PlanRun`]: one run of a plan on its own threads, with the handle the control API uses.
//!
//! Boot groups run in order; in each: pre hooks in order, then every machine in parallel (see
//! `machine.rs`), then post hooks, then the manual step. The first failure stops the run in state
//! `failed` with everything in place (boot processes, prepared disks) for [`PlanRun::cleanup`].

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::file::{BootGroup, Plan};
use super::ops::{Mode, PlanOps};
use super::status::{
    self, MachineState, MachineStatus, Outcome, RunState, RunStatus, Step, StepKind,
};
use rewind_linux::clock::now_ms;
use rewind_linux::process;

pub struct PlanRun {
    pub(crate) plan: Plan,
    pub(crate) ops: Arc<dyn PlanOps>,
    pub(crate) mode: Mode,
    pub(crate) point: Option<String>,
    pub(crate) log_dir: PathBuf,
    inner: Mutex<Inner>,
    /// Signalled on every status change, on `continue_run` and on `cleanup`.
    changed: Condvar,
    /// Set by `cleanup`: every wait of the run gives up and stops what it started.
    pub(crate) cancelled: AtomicBool,
    /// Boot processes, still running or not: `cleanup` stops their process groups and reaps them.
    pub(crate) boots: Mutex<Vec<Child>>,
    /// Protection groups whose `prepare` succeeded, in order, for `cleanup`.
    pub(crate) prepared: Mutex<Vec<String>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// One `cleanup` at a time.
    cleanup_lock: Mutex<()>,
}

struct Inner {
    status: RunStatus,
    continue_requested: bool,
}

impl PlanRun {
    /// Check the plan against the store (every protection group and disk it names), then start
    /// running it in the background. A plan that fails the check changes nothing: the error is
    /// returned before any hook, prepare or boot, and before `log_dir` is created.
    pub fn start(
        plan: Plan,
        ops: Arc<dyn PlanOps>,
        mode: Mode,
        point: Option<String>,
        log_dir: &Path,
    ) -> Result<Arc<PlanRun>> {
        plan.check_groups(&|g| ops.disks(g))?;
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        // Logs that are appended to during a run start empty (console logs are created afresh).
        for m in plan.machines() {
            remove_if_present(&health_log(log_dir, &m.name))?;
        }
        remove_if_present(&hooks_log(log_dir))?;
        let machines = plan
            .boot_groups
            .iter()
            .flat_map(|bg| {
                bg.machines.iter().map(|m| MachineStatus {
                    name: m.name.clone(),
                    boot_group: bg.name.clone(),
                    group: m.group.clone(),
                    state: MachineState::Pending,
                    pid: None,
                    console_log: console_log(log_dir, &m.name),
                    healthy_ms: None,
                })
            })
            .collect();
        let mut status = RunStatus {
            plan: plan.name.clone(),
            mode,
            point: point.clone(),
            state: RunState::Running,
            started_ms: now_ms(),
            ended_ms: None,
            rto_ms: None,
            machines_total: 0,
            machines_healthy: 0,
            progress_percent: 0,
            manual: None,
            error: None,
            steps: Vec::new(),
            machines,
        };
        status.recount();
        status::save(log_dir, &status)?;
        tracing::info!(plan = %plan.name, %mode, log_dir = %log_dir.display(), "recovery plan started");
        let run = Arc::new(PlanRun {
            plan,
            ops,
            mode,
            point,
            log_dir: log_dir.to_path_buf(),
            inner: Mutex::new(Inner {
                status,
                continue_requested: false,
            }),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
            boots: Mutex::new(Vec::new()),
            prepared: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
            cleanup_lock: Mutex::new(()),
        });
        let me = run.clone();
        let handle = std::thread::Builder::new()
            .name(format!("plan-{}", run.plan.name))
            .spawn(move || me.run())
            .context("starting the plan thread")?;
        *run.thread.lock().expect("plan thread lock") = Some(handle);
        Ok(run)
    }

    /// A copy of the current status.
    pub fn status(&self) -> RunStatus {
        self.lock().status.clone()
    }

    /// Resume a run that waits on a manual step.
    pub fn continue_run(&self) -> Result<()> {
        let mut inner = self.lock();
        if inner.status.state != RunState::Waiting {
            bail!(
                "no manual step is waiting (the run is {:?})",
                inner.status.state
            );
        }
        inner.continue_requested = true;
        self.changed.notify_all();
        Ok(())
    }

    /// Block until the run has finished (succeeded, failed or cleaned) and return its status.
    pub fn wait(&self) -> RunStatus {
        let mut inner = self.lock();
        while !inner.status.state.is_finished() {
            inner = self.changed.wait(inner).expect("plan status lock");
        }
        inner.status.clone()
    }

    /// Block until the run's status satisfies `done` or `timeout` passes; returns the last status.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&RunStatus) -> bool) -> RunStatus {
        let inner = self.lock();
        let (inner, _) = self
            .changed
            .wait_timeout_while(inner, timeout, |i| !done(&i.status))
            .expect("plan status lock");
        inner.status.clone()
    }

    /// Stop the run if it still runs, stop every boot process's process group (SIGTERM, then
    /// SIGKILL) and reap it, undo `prepare` for each protection group in test mode, and set the
    /// state `cleaned`. Planned and unplanned promotions stay. Calling it again after success
    /// does nothing; after an `ops.cleanup` error it retries the groups not yet cleaned.
    pub fn cleanup(&self) -> Result<()> {
        let _one = self.cleanup_lock.lock().expect("plan cleanup lock");
        if self.lock().status.state == RunState::Cleaned {
            return Ok(());
        }
        self.cancelled.store(true, Ordering::SeqCst);
        {
            let _inner = self.lock();
            self.changed.notify_all();
        }
        // SIGTERM first so that machine threads waiting on health checks see their boot
        // processes go; then wait for the run thread, after which nothing new can start.
        for child in self.boots.lock().expect("plan boots lock").iter() {
            process::signal_group(child.id(), nix::sys::signal::Signal::SIGTERM);
        }
        if let Some(t) = self.thread.lock().expect("plan thread lock").take() {
            let _ = t.join();
        }
        let mut boots = std::mem::take(&mut *self.boots.lock().expect("plan boots lock"));
        let pids: Vec<u32> = boots.iter().map(|c| c.id()).collect();
        process::terminate_all(&mut boots, process::TERM_GRACE);
        tracing::info!(?pids, "plan cleanup: boot process groups stopped");
        let mut failures = Vec::new();
        if self.mode == Mode::Test {
            let groups = self.prepared.lock().expect("plan prepared lock").clone();
            for group in groups {
                let step = self.begin_step(StepKind::Cleanup, None, None, &group);
                match self.ops.cleanup(&group, self.mode) {
                    Ok(()) => {
                        self.prepared
                            .lock()
                            .expect("plan prepared lock")
                            .retain(|g| *g != group);
                        self.end_step(step, Outcome::Ok, format!("{group}: cleaned up"));
                    }
                    Err(e) => {
                        self.end_step(step, Outcome::Failed, format!("{group}: {e:#}"));
                        failures.push(format!("{group}: {e:#}"));
                    }
                }
            }
        }
        if !failures.is_empty() {
            bail!("cleanup failed for {}", failures.join("; "));
        }
        self.update(|s| {
            s.state = RunState::Cleaned;
            s.manual = None;
            s.ended_ms.get_or_insert_with(now_ms);
        });
        tracing::info!(plan = %self.plan.name, "recovery plan cleaned up");
        Ok(())
    }

    /// The run thread.
    fn run(self: &Arc<Self>) {
        let result = self
            .plan
            .boot_groups
            .iter()
            .try_for_each(|bg| self.run_boot_group(bg));
        let now = now_ms();
        match result {
            Ok(()) => self.update(|s| {
                s.state = RunState::Succeeded;
                s.ended_ms = Some(now);
                let last_healthy = s.machines.iter().filter_map(|m| m.healthy_ms).max();
                s.rto_ms = last_healthy.map(|h| h.saturating_sub(s.started_ms));
            }),
            Err(e) => {
                tracing::warn!(plan = %self.plan.name, error = %e, "recovery plan failed");
                self.update(|s| {
                    s.state = RunState::Failed;
                    s.ended_ms = Some(now);
                    s.manual = None;
                    s.error = Some(e);
                });
            }
        }
    }

    fn run_boot_group(&self, bg: &BootGroup) -> Result<(), String> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(format!("boot group {}: cancelled by cleanup", bg.name));
        }
        for cmd in &bg.pre {
            self.run_hook(bg, "pre", cmd)?;
        }
        let failed: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = bg
                .machines
                .iter()
                .map(|m| s.spawn(move || self.boot_machine(bg, m).err()))
                .collect();
            threads
                .into_iter()
                .filter_map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Some("machine thread panicked".into()))
                })
                .collect()
        });
        if !failed.is_empty() {
            return Err(format!("boot group {}: {}", bg.name, failed.join("; ")));
        }
        for cmd in &bg.post {
            self.run_hook(bg, "post", cmd)?;
        }
        if let Some(text) = &bg.manual {
            self.manual_step(bg, text)?;
        }
        Ok(())
    }

    /// Wait for `continue_run` (or `cleanup`).
    fn manual_step(&self, bg: &BootGroup, text: &str) -> Result<(), String> {
        let step = self.begin_step(StepKind::Manual, Some(&bg.name), None, text);
        let mut inner = self.lock();
        inner.continue_requested = false;
        inner.status.steps[step].outcome = Outcome::Waiting;
        inner.status.state = RunState::Waiting;
        inner.status.manual = Some(text.to_string());
        self.publish(&mut inner);
        tracing::info!(boot_group = %bg.name, "recovery plan waits for a manual step: {text}");
        while !inner.continue_requested && !self.cancelled.load(Ordering::SeqCst) {
            inner = self.changed.wait(inner).expect("plan status lock");
        }
        inner.status.manual = None;
        let result = if inner.continue_requested {
            inner.status.state = RunState::Running;
            Ok(())
        } else {
            Err("cancelled by cleanup".to_string())
        };
        self.publish(&mut inner);
        drop(inner);
        match result {
            Ok(()) => self.end_step(step, Outcome::Ok, format!("{text}: continued")),
            Err(ref e) => self.end_step(step, Outcome::Failed, format!("{text}: {e}")),
        }
        result.map_err(|e| format!("boot group {}: manual step: {e}", bg.name))
    }

    // Status bookkeeping. Every change is saved and announced while the lock is held, so that
    // status.json never goes back in time.

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("plan status lock")
    }

    fn publish(&self, inner: &mut Inner) {
        inner.status.recount();
        if let Err(e) = status::save(&self.log_dir, &inner.status) {
            tracing::error!(error = %e, "saving the recovery plan status");
        }
        self.changed.notify_all();
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut RunStatus)) {
        let mut inner = self.lock();
        f(&mut inner.status);
        self.publish(&mut inner);
    }

    pub(crate) fn set_machine(&self, name: &str, f: impl FnOnce(&mut MachineStatus)) {
        self.update(|s| f(s.machine_mut(name)));
    }

    /// Record a step as running; returns its index for `end_step`.
    pub(crate) fn begin_step(
        &self,
        kind: StepKind,
        boot_group: Option<&str>,
        machine: Option<&str>,
        message: &str,
    ) -> usize {
        let mut inner = self.lock();
        inner.status.steps.push(Step {
            kind,
            boot_group: boot_group.map(str::to_string),
            machine: machine.map(str::to_string),
            started_ms: now_ms(),
            ended_ms: None,
            outcome: Outcome::Running,
            message: message.to_string(),
        });
        let i = inner.status.steps.len() - 1;
        self.publish(&mut inner);
        i
    }

    pub(crate) fn end_step(&self, step: usize, outcome: Outcome, message: String) {
        self.update(|s| {
            let st = &mut s.steps[step];
            st.ended_ms = Some(now_ms());
            st.outcome = outcome;
            st.message = message;
        });
    }
}

/// `LOG_DIR/MACHINE.health.log`: the output of a command health check's tries.
pub fn health_log(log_dir: &Path, machine: &str) -> PathBuf {
    log_dir.join(format!("{machine}.health.log"))
}

/// `LOG_DIR/hooks.log`: every hook's output, each after a header line.
pub fn hooks_log(log_dir: &Path) -> PathBuf {
    log_dir.join("hooks.log")
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `LOG_DIR/MACHINE.console.log`: the boot command's stdout and stderr.
pub fn console_log(log_dir: &Path, machine: &str) -> PathBuf {
    log_dir.join(format!("{machine}.console.log"))
}
