//! The last test failover of each group and how it went, kept in `DATA_DIR/drills/GROUP.json`
//! so that `rewind_last_test_failover_timestamp_seconds` survives a restart (an alert on a
//! drill overdue by 90 days must not be reset by one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One group's last drill.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Drill {
    /// When its disks were ready (or it failed), unix ms.
    pub timestamp_ms: u64,
    pub ok: bool,
}

/// Every group's last drill.
#[derive(Debug)]
pub struct Drills {
    dir: PathBuf,
    last: Mutex<BTreeMap<String, Drill>>,
}

impl Drills {
    /// Reads `DATA_DIR/drills` (a file that does not parse is skipped with a warning: it only
    /// feeds a metric).
    pub fn load(data_dir: &Path) -> Drills {
        let dir = data_dir.join("drills");
        let mut last = BTreeMap::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let (Some(group), Some("json")) = (
                p.file_stem().and_then(|s| s.to_str()),
                p.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            match std::fs::read(&p).map(|b| serde_json::from_slice::<Drill>(&b)) {
                Ok(Ok(d)) => {
                    last.insert(group.to_string(), d);
                }
                _ => tracing::warn!(path = %p.display(), "skipping an unreadable drill record"),
            }
        }
        Drills {
            dir,
            last: Mutex::new(last),
        }
    }

    /// Notes a test failover of `group` that ended now, well or not. A failure to persist is
    /// logged: the drill itself is what matters.
    pub fn record(&self, group: &str, ok: bool) {
        let d = Drill {
            timestamp_ms: rewind_linux::clock::now_ms(),
            ok,
        };
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_string(), d);
        let saved = crate::store::files::create_dir_durable(&self.dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(crate::access::make_private_dir(&self.dir)?))
            .and_then(|()| {
                let json = serde_json::to_vec(&d)?;
                crate::store::files::write_atomic(&self.dir.join(format!("{group}.json")), &json)
                    .map_err(anyhow::Error::from)
            });
        if let Err(e) = saved {
            tracing::warn!(group, error = %e, "recording the test failover for monitoring");
        }
    }

    /// Every group's last drill.
    pub fn all(&self) -> BTreeMap<String, Drill> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let d = Drills::load(dir.path());
        assert!(d.all().is_empty());
        d.record("web", true);
        d.record("db", false);
        let again = Drills::load(dir.path());
        let all = again.all();
        assert!(all["web"].ok);
        assert!(!all["db"].ok);
        assert!(all["web"].timestamp_ms > 0);
    }
}
