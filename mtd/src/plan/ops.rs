//! What a plan run needs from the rest of the daemon: making a protection group's disks bootable,
//! undoing that, and listing a group's disks. The daemon implements [`PlanOps`] with the real
//! failover operations; tests use a fake.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a plan is run, which decides what `prepare` does with the disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Writable overlays of one point; replication goes on; `cleanup` discards them.
    Test,
    /// Drain the agent, then promote: no data loss.
    Planned,
    /// Promote a chosen point (the source site is gone).
    Unplanned,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Planned => "planned",
            Mode::Unplanned => "unplanned",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "test" => Ok(Mode::Test),
            "planned" => Ok(Mode::Planned),
            "unplanned" => Ok(Mode::Unplanned),
            _ => Err(format!(
                "unknown mode {s:?}: expected test, planned or unplanned"
            )),
        }
    }
}

/// One disk of a prepared protection group, as a boot command can reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedDisk {
    pub disk: String,
    /// Substituted for `{nbd:DISK}`.
    pub nbd_uri: String,
    /// Substituted for `{loop:DISK}`; `None` where no loop device was made.
    pub loop_device: Option<String>,
}

/// The failover operations a plan run drives. Called from the run's own threads (several
/// machines of a boot group prepare at once), never from a tokio worker.
pub trait PlanOps: Send + Sync {
    /// Make the group's disks bootable for this mode (test: overlays of one point;
    /// planned/unplanned: promotion) and return, per disk, its NBD URI and loop device.
    /// On error it should leave nothing behind: the run only cleans up groups whose prepare
    /// succeeded.
    fn prepare(
        &self,
        group: &str,
        mode: Mode,
        point: Option<&str>,
    ) -> anyhow::Result<Vec<PreparedDisk>>;
    /// Undo prepare for test mode (planned/unplanned promotions are not undone by cleanup).
    fn cleanup(&self, group: &str, mode: Mode) -> anyhow::Result<()>;
    /// The group's disk names (validation), or an error for an unknown group.
    fn disks(&self, group: &str) -> anyhow::Result<Vec<String>>;
}
