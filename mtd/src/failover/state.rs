//! What the target remembers about a group's failovers, in `DATA_DIR/failover/GROUP.json`.
//!
//! Written (atomically) before an operation reports success, so a restarted daemon knows which
//! overlays are a test failover's or the live disks, re-attaches their loop devices, and keeps
//! refusing what the state forbids (a second promotion, a change of point after commit).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One disk of a failover: its overlay, how to reach it, and its loop device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailoverDisk {
    pub disk: String,
    pub overlay: String,
    /// The NBD export name (`GROUP/DISK@test`, `GROUP/DISK@live`).
    pub export: String,
    /// `nbd+unix:///EXPORT?socket=...` or `nbd://HOST:PORT/EXPORT` (None: NBD is off).
    pub nbd_uri: Option<String>,
    /// The read-write loop device (None without a view tree).
    pub loop_device: Option<String>,
}

/// A set of writable disks made from one point: the same seq for every disk of the group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskSet {
    /// The point as asked for (`latest`, `tag:x`, a time...).
    pub point: String,
    pub seq: u64,
    pub started_ms: u64,
    pub disks: Vec<FailoverDisk>,
    /// The configured boot command, when one was started: its process group and log.
    #[serde(default)]
    pub boot: Option<BootProcess>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootProcess {
    pub pid: u32,
    /// The process's start time (/proc/PID/stat), so a later daemon can tell it is still the
    /// same process before it signals the pid (a kill -9 of the daemon leaves it running).
    #[serde(default)]
    pub started: Option<u64>,
    pub command: String,
    pub log: PathBuf,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PromotionKind {
    Planned,
    Unplanned,
}

/// The group was made live here: its source is fenced and the live disks take writes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Promotion {
    pub kind: PromotionKind,
    pub set: DiskSet,
    /// The group's generation after the promotion bumped it.
    pub generation: u64,
    /// Committed: the point is permanent and the history after it is gone.
    pub committed: bool,
}

/// Reverse replication: an agent here protects the live disks and streams them to another site.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reverse {
    /// `tcp:HOST:PORT` or `unix:PATH`, as the agent takes it.
    pub target: String,
    pub agent_name: String,
    pub state_dir: PathBuf,
    pub links_dir: PathBuf,
    /// The agent's extra flags (TLS or --insecure).
    pub extra_args: Vec<String>,
    pub generation: u64,
    pub pid: Option<u32>,
    /// The agent's start time (/proc/PID/stat): see [`BootProcess::started`].
    #[serde(default)]
    pub pid_started: Option<u64>,
    pub started_ms: u64,
}

/// A boot command for the group's failovers, with `{nbd:DISK}`, `{loop:DISK}` and `{group}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootConfig {
    pub command: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupFailover {
    pub group: String,
    #[serde(default)]
    pub boot: Option<BootConfig>,
    #[serde(default)]
    pub test: Option<DiskSet>,
    #[serde(default)]
    pub promotion: Option<Promotion>,
    #[serde(default)]
    pub reverse: Option<Reverse>,
    /// The probes and network setting of the group's drills (`crate::drill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<crate::drill::config::DrillConfig>,
}

impl GroupFailover {
    pub fn is_empty(&self) -> bool {
        self.boot.is_none()
            && self.test.is_none()
            && self.promotion.is_none()
            && self.reverse.is_none()
            && self.drill.is_none()
    }
}

pub fn state_path(dir: &Path, group: &str) -> PathBuf {
    dir.join(format!("{group}.json"))
}

pub fn load_all(dir: &Path) -> Result<Vec<GroupFailover>> {
    // Durable: its files are fsynced, and a power cut must not drop them with the directory.
    crate::store::files::create_dir_durable(dir)?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let s: GroupFailover =
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))?;
        out.push(s);
    }
    Ok(out)
}

pub fn save(dir: &Path, s: &GroupFailover) -> Result<()> {
    let p = state_path(dir, &s.group);
    if s.is_empty() {
        match std::fs::remove_file(&p) {
            Ok(()) => crate::store::files::sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
        return Ok(());
    }
    let json = serde_json::to_vec_pretty(s)?;
    crate::store::files::write_atomic(&p, &json)?;
    Ok(())
}
