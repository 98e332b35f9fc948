//! Each group's last online verify, kept in `DATA_DIR/verify/GROUP.json` so that a restart of
//! the target forgets neither a difference found nor when the group was last verified: the
//! metrics (`crate::metrics::verify`), `GET /v1/groups` and the site's `verify_mismatch` alert
//! read it, and the alert stays until a later verify finds nothing or repairs what it found.
//!
//! Process-wide, like the verify registry: the job that ends a verify and the collectors that
//! read it share no other handle. The daemon loads it once at start (`load`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::store::files::{create_dir_durable, write_atomic};

/// One group's last verify, as kept on disk and shown in `GET /v1/groups` (`verify`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastVerify {
    pub job: u64,
    /// When it ended (unix milliseconds).
    pub ended_ms: u64,
    pub compared_bytes: u64,
    /// Bytes of the replica found to differ from the source (0: none).
    pub mismatched_bytes: u64,
    pub ranges: usize,
    /// The differing ranges were resent and acknowledged (`--repair`).
    pub repaired: bool,
}

impl LastVerify {
    /// The replica still differs from the source, as far as the last verify knows.
    pub fn differs(&self) -> bool {
        self.mismatched_bytes > 0 && !self.repaired
    }
}

#[derive(Default)]
struct Lasts {
    /// `DATA_DIR/verify`, once loaded (a library user that never loads keeps them in memory).
    dir: Option<PathBuf>,
    groups: BTreeMap<String, LastVerify>,
}

fn lasts() -> MutexGuard<'static, Lasts> {
    static L: Mutex<Lasts> = Mutex::new(Lasts {
        dir: None,
        groups: BTreeMap::new(),
    });
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads what earlier runs of the daemon on `data_dir` kept. An unreadable file is skipped
/// with a warning: it costs a verify's memory, not the start.
pub fn load(data_dir: &Path) {
    let dir = data_dir.join("verify");
    let mut groups = BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Some(name) = p
            .file_name()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_suffix(".json"))
        else {
            continue;
        };
        if rewind_formats::validate_name(name).is_err() {
            continue;
        }
        match std::fs::read(&p)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<LastVerify>(&b)?))
        {
            Ok(v) => {
                groups.insert(name.to_string(), v);
            }
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "skipping an unreadable verify record")
            }
        }
    }
    let mut l = lasts();
    l.dir = Some(dir);
    l.groups = groups;
}

/// Keeps `group`'s last verify, on disk first (a failure to write is logged: the result is
/// still in memory, the job's answer and the events).
pub fn record(group: &str, v: LastVerify) {
    let mut l = lasts();
    if let Some(dir) = &l.dir {
        if let Err(e) = keep(dir, group, &v) {
            tracing::warn!(group, error = %e, "cannot keep the verify result on disk");
        }
    }
    l.groups.insert(group.to_string(), v);
}

fn keep(dir: &Path, group: &str, v: &LastVerify) -> anyhow::Result<()> {
    create_dir_durable(dir)?;
    crate::access::make_private_dir(dir)?;
    write_atomic(&dir.join(format!("{group}.json")), &serde_json::to_vec(v)?)?;
    Ok(())
}

/// `group`'s last verify, if one ran.
pub fn get(group: &str) -> Option<LastVerify> {
    lasts().groups.get(group).cloned()
}

/// Every group's last verify.
pub fn all() -> BTreeMap<String, LastVerify> {
    lasts().groups.clone()
}

/// A deleted group's record: gone from memory and disk.
pub fn forget(group: &str) {
    let mut l = lasts();
    l.groups.remove(group);
    if let Some(dir) = &l.dir {
        match std::fs::remove_file(dir.join(format!("{group}.json"))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot remove a deleted group's verify record")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_across_a_load_and_forgotten_with_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        load(tmp.path());
        let v = LastVerify {
            job: 7,
            ended_ms: 1_700_000_000_000,
            compared_bytes: 1 << 20,
            mismatched_bytes: 4096,
            ranges: 1,
            repaired: false,
        };
        record("lv-web", v.clone());
        assert!(v.differs());
        // A restart: memory is rebuilt from the file alone.
        lasts().groups.clear();
        load(tmp.path());
        assert_eq!(get("lv-web"), Some(v));
        let mode = std::fs::metadata(tmp.path().join("verify")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
            0
        );
        forget("lv-web");
        assert_eq!(get("lv-web"), None);
        assert!(!tmp.path().join("verify/lv-web.json").exists());
        // A garbled file is skipped, not fatal.
        std::fs::write(tmp.path().join("verify/lv-bad.json"), b"{").unwrap();
        load(tmp.path());
        assert_eq!(get("lv-bad"), None);
    }
}
