//! The status file (`STATE_DIR/status.json`): what `rewind-agent status` prints and what tests
//! and monitoring poll. Rewritten a few times a second by the running agent (write a temporary
//! file, rename it over the old one: readers never see half a file).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use rewind_formats::agent_status::{DiskStatus, Drained, Status, SyncState};

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(super::STATUS_FILE)
}

pub fn write(state_dir: &Path, status: &Status) -> Result<()> {
    let text = serde_json::to_vec_pretty(status).expect("status serialises");
    // Rewritten five times a second: not synced (a crash only loses a stale status).
    super::files::replace(&path(state_dir), &text, false)
}

pub fn read(state_dir: &Path) -> Result<Status> {
    let p = path(state_dir);
    let text = std::fs::read(&p).map_err(Error::path("reading the agent status", &p))?;
    serde_json::from_slice(&text).map_err(|e| Error::Config {
        what: "status file",
        why: format!("{}: {e}", p.display()),
    })
}
