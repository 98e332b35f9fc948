//! The state directory (`--state-dir`): every file a running agent keeps there, named in one
//! place ([`StateDir`]).
//!
//! ```text
//! agent.lock     held (flock) for the agent's life: one agent per state dir
//! status.json    what `rewind-agent status` prints (status)
//! control.sock   `rewind-agent tag` asks the running agent for a tag (crate::control)
//! GROUP.dirty    the dirty-region map (crate::sync::dirty)
//! GROUP.spool    captured writes that did not fit in memory (crate::stream::spool)
//! GROUP.window   present while a resync window may be open at the target
//! GROUP.acked    the last wire seq the target acknowledged
//! GROUP.fenced   the target fenced this agent for the group: the reason
//! GROUP.epoch    the group's epoch and the target address it was taken for (epoch)
//! ```

pub mod epoch;
pub mod files;
pub mod report;
pub mod status;

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use rewind_formats::Seq;

use crate::error::{Error, Result};

/// The status file's name (see [`status`]).
pub const STATUS_FILE: &str = rewind_formats::AGENT_STATUS_FILE;
/// The control socket's name (see [`crate::control`]).
pub const CONTROL_SOCKET: &str = "control.sock";
const LOCK_FILE: &str = "agent.lock";

/// One group's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
    group: String,
}

impl StateDir {
    pub fn new(dir: &Path, group: &str) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
            group: group.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory private and locks it for this agent's life (the returned file holds
    /// the lock): a second agent on the same state dir is refused.
    pub fn lock(&self) -> Result<File> {
        let dir = &self.dir;
        if !dir.is_dir() {
            return Err(Error::Config {
                what: "--state-dir",
                why: format!("{} does not exist or is not a directory", dir.display()),
            });
        }
        files::make_private_dir(dir)?;
        // The directory's own entry must survive a power cut before anything in it counts: an
        // operator's fresh mkdir (or a reverse replication's) may still be only in the page
        // cache, and losing it loses the dirty-region map with it.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            rewind_linux::atomic::sync_dir(parent)
                .map_err(Error::path("fsync the state directory's parent", parent))?;
        }
        let p = dir.join(LOCK_FILE);
        let f = File::create(&p).map_err(Error::path("creating", &p))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Config {
                what: "--state-dir",
                why: format!("{} is in use by another rewind-agent", dir.display()),
            });
        }
        Ok(f)
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.join(CONTROL_SOCKET)
    }

    /// `STATE_DIR/GROUP.EXT`.
    fn group_file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.group))
    }

    /// The dirty-region map.
    pub fn dirty_map(&self) -> PathBuf {
        self.group_file("dirty")
    }

    /// The replication policy the target sent last (JSON, see `crate::policy`).
    pub fn policy_file(&self) -> PathBuf {
        self.group_file("policy")
    }

    /// The disk spool.
    pub fn spool(&self) -> PathBuf {
        self.group_file("spool")
    }

    /// The window file: a resync window may be open at the target (this run or an earlier one
    /// opened it, and its SyncEnd is not acknowledged yet).
    fn window(&self) -> PathBuf {
        self.group_file("window")
    }

    pub fn window_open(&self) -> bool {
        self.window().exists()
    }

    /// Notes durably that a window is open, so a crash before its SyncEnd is acknowledged
    /// closes it at the next start.
    pub fn record_window(&self) -> Result<()> {
        let file = self.window();
        if !file.exists() {
            files::replace(&file, b"", true)?;
        }
        Ok(())
    }

    /// The window's SyncEnd is acknowledged.
    pub fn clear_window(&self) {
        let _ = std::fs::remove_file(self.window());
    }

    /// `GROUP.acked`: the last wire seq the target acknowledged, written before any region it
    /// covers is cleared from the dirty-region map. A target whose durable seq is below it at
    /// the next start has lost acknowledged data.
    fn acked(&self) -> PathBuf {
        self.group_file("acked")
    }

    pub fn read_acked(&self) -> Option<Seq> {
        let text = std::fs::read_to_string(self.acked()).ok()?;
        text.trim().parse().ok().map(Seq)
    }

    pub fn write_acked(&self, seq: Seq) -> Result<()> {
        files::replace(&self.acked(), format!("{seq}\n").as_bytes(), true)
    }

    /// `GROUP.fenced`: the target fenced this agent for the group (it failed over).
    pub fn fenced_file(&self) -> PathBuf {
        self.group_file("fenced")
    }

    /// The reason in the fenced file, if there is one.
    pub fn read_fenced(&self) -> Option<String> {
        std::fs::read_to_string(self.fenced_file())
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn write_fenced(&self, reason: &str) -> Result<()> {
        files::replace(&self.fenced_file(), format!("{reason}\n").as_bytes(), true)
    }

    pub fn write_status(&self, st: &status::Status) -> Result<()> {
        status::write(&self.dir, st)
    }
}
