//! The record of a run: its state, every step with its start, end and outcome, every machine, and
//! the measured RTO. Serialisable as the API's answer, and kept in `LOG_DIR/status.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::ops::Mode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    /// A manual step waits for `continue_run`.
    Waiting,
    Succeeded,
    /// A step failed; later boot groups did not start; everything is left for `cleanup`.
    Failed,
    /// `cleanup` ran: boot processes are gone and test-mode preparations undone.
    Cleaned,
}

impl RunState {
    /// The run thread has stopped (nothing more will happen without `cleanup`).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cleaned
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Hook,
    Prepare,
    Boot,
    Health,
    Manual,
    /// `ops.cleanup` of one protection group, during `cleanup`.
    Cleanup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Running,
    Ok,
    Failed,
    Waiting,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub kind: StepKind,
    pub boot_group: Option<String>,
    pub machine: Option<String>,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub outcome: Outcome,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// Its boot group has not started.
    Pending,
    Preparing,
    /// The boot command runs; the health check has not passed yet.
    Booting,
    Healthy,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineStatus {
    pub name: String,
    pub boot_group: String,
    /// The protection group it boots from.
    pub group: String,
    pub state: MachineState,
    /// The boot command's pid, which is also its process group id.
    pub pid: Option<u32>,
    pub console_log: PathBuf,
    pub healthy_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    pub plan: String,
    pub mode: Mode,
    pub point: Option<String>,
    pub state: RunState,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// From the start of the run until the last machine was healthy; set when every machine is.
    pub rto_ms: Option<u64>,
    pub machines_total: usize,
    pub machines_healthy: usize,
    /// machines_healthy / machines_total, 0..=100.
    pub progress_percent: u8,
    /// The instruction of the manual step that is waiting.
    pub manual: Option<String>,
    /// Why the run failed.
    pub error: Option<String>,
    pub steps: Vec<Step>,
    pub machines: Vec<MachineStatus>,
}

impl RunStatus {
    /// Recount the healthy machines and the progress after a change.
    pub(crate) fn recount(&mut self) {
        self.machines_total = self.machines.len();
        self.machines_healthy = self
            .machines
            .iter()
            .filter(|m| m.state == MachineState::Healthy)
            .count();
        // A plan without machines (only hooks) has nothing left to boot: 100 %.
        self.progress_percent = (self.machines_healthy * 100)
            .checked_div(self.machines_total)
            .unwrap_or(100) as u8;
    }

    pub(crate) fn machine_mut(&mut self, name: &str) -> &mut MachineStatus {
        self.machines
            .iter_mut()
            .find(|m| m.name == name)
            .expect("every machine of the plan has a status entry")
    }
}

/// `LOG_DIR/status.json`.
pub fn status_path(log_dir: &Path) -> PathBuf {
    log_dir.join("status.json")
}

/// Replace `LOG_DIR/status.json` atomically, so a reader never sees half a file.
pub(crate) fn save(log_dir: &Path, status: &RunStatus) -> Result<()> {
    let path = status_path(log_dir);
    let json = serde_json::to_vec_pretty(status)?;
    crate::store::files::write_atomic(&path, &json)
        .with_context(|| format!("saving {}", path.display()))
}

/// The last status a run saved in `log_dir` (for a daemon that restarted since).
pub fn read_status(log_dir: &Path) -> Result<RunStatus> {
    let path = status_path(log_dir);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}
