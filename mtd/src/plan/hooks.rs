//! Pre and post hooks: shell commands run in order around a boot group's machines. Their output
//! goes to `LOG_DIR/hooks.log`; a hook that exits non-zero fails the run.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::Stdio;

use super::file::BootGroup;
use super::runner::{hooks_log, PlanRun};
use super::status::{Outcome, StepKind};
use rewind_linux::process::{self, Finished};

impl PlanRun {
    /// Run one hook to its end; `phase` is "pre" or "post".
    pub(crate) fn run_hook(&self, bg: &BootGroup, phase: &str, cmd: &str) -> Result<(), String> {
        let label = format!("{phase} hook `{cmd}`");
        if self.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!(
                "boot group {}: {label}: cancelled by cleanup",
                bg.name
            ));
        }
        let step = self.begin_step(StepKind::Hook, Some(&bg.name), None, &label);
        let result = self.hook_process(bg, &label, cmd);
        match &result {
            Ok(()) => self.end_step(step, Outcome::Ok, format!("{label}: ok")),
            Err(e) => self.end_step(step, Outcome::Failed, format!("{label}: {e}")),
        }
        result.map_err(|e| format!("boot group {}: {label}: {e}", bg.name))
    }

    fn hook_process(&self, bg: &BootGroup, label: &str, cmd: &str) -> Result<(), String> {
        let path = hooks_log(&self.log_dir);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        let _ = writeln!(log, "== boot group {}: {label}", bg.name);
        let err = log
            .try_clone()
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        let mut c = process::shell(cmd);
        c.stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .env("REWIND_PLAN", &self.plan.name)
            .env("REWIND_MODE", self.mode.as_str())
            .env("REWIND_POINT", self.point.as_deref().unwrap_or(""))
            .env("REWIND_BOOT_GROUP", &bg.name);
        match process::run_until(&mut c, None, &self.cancelled) {
            Ok(Finished::Exited(st)) if st.success() => Ok(()),
            Ok(Finished::Exited(st)) => Err(format!("{st} (output in {})", path.display())),
            Ok(Finished::TimedOut) => Err("timed out".into()),
            Ok(Finished::Cancelled) => Err("cancelled by cleanup".into()),
            Err(e) => Err(format!("cannot start sh: {e}")),
        }
    }
}
