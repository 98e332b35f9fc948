//! What the relay keeps about a group besides its frames (`GROUP/meta.json`): the agent that
//! feeds it (the identity its certificate proved), its disks and generation (what the relay's
//! own HELLO upstream says), the agent's epoch, and the last seq the master target acknowledged.
//!
//! `target_durable` is written (synced, renamed) before any cached segment is freed: at any
//! time the relay holds every seq it acknowledged, either in its cache or known durable at the
//! target, so the WELCOME it gives an agent after a crash is never behind what it acknowledged.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use rewind_formats::message::DiskInfo;
use serde::{Deserialize, Serialize};

pub(crate) const META: &str = "meta.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) agent: String,
    pub(crate) generation: u64,
    pub(crate) disks: Vec<(String, u64)>,
    /// The last seq the master target acknowledged (0: none known).
    pub(crate) target_durable: u64,
    /// The agent's epoch the cache was filled under (see [`super::epoch`]); 0 in metadata from
    /// before epochs.
    #[serde(default)]
    pub(crate) epoch: u64,
}

impl Meta {
    pub(crate) fn disk_infos(&self) -> Vec<DiskInfo> {
        self.disks
            .iter()
            .map(|(d, s)| DiskInfo {
                disk: d.clone(),
                size_bytes: *s,
            })
            .collect()
    }

    pub(crate) fn load(dir: &Path) -> Result<Meta> {
        let p = dir.join(META);
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let m: Meta =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        rewind_formats::validate_name(&m.agent)
            .with_context(|| format!("{}: agent name", p.display()))?;
        Ok(m)
    }

    /// Written whole to a temporary file, synced, renamed over the old one, directory synced.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(".meta.json.tmp");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(META))?;
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}
