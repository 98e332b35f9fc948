//! Failover sites: targets with a view tree (failover's loop devices need one), and the
//! reverse-replication agent a site runs after a failover.

use std::fs;
use std::path::{Path, PathBuf};

use super::mtd::Mtd;

/// A target with a view tree under `work/NAME`.
pub fn site(work: &Path, name: &str) -> Mtd {
    let dir = work.join(name);
    fs::create_dir_all(&dir).expect("site dir");
    let views = dir.join("views");
    Mtd::start_with(&dir, &["--views", views.to_str().expect("utf-8 path")])
}

/// The first live disk's loop device in a promotion's job result.
pub fn live_loop(r: &serde_json::Value) -> PathBuf {
    PathBuf::from(
        r["promotion"]["set"]["disks"][0]["loop_device"]
            .as_str()
            .unwrap_or_else(|| panic!("no live loop device: {r}")),
    )
}

/// The state dir of the reverse-replication agent `mtd` runs for `group`.
pub fn reverse_state(mtd: &Mtd, group: &str) -> PathBuf {
    let st = mtd.rewind_json(&["failover", "status", group]);
    PathBuf::from(
        st["state"]["reverse"]["state_dir"]
            .as_str()
            .unwrap_or_else(|| panic!("group {group} has no reverse replication: {st}")),
    )
}

/// That agent's log.
pub fn reverse_log(mtd: &Mtd, group: &str) -> String {
    fs::read_to_string(reverse_state(mtd, group).join("agent.log")).unwrap_or_default()
}
