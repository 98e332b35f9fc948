//! What a drill proves, kept on disk: every run in `DATA_DIR/drills/GROUP/RUN/` (the console
//! log, each probe's output, the screenshot, `summary.json`), and per group `last.json` (the last
//! drill, whatever its result) and `verified.json` (the last verified point). These two survive
//! a restart, so the metrics and the site's alerts on a failed or overdue drill do too.
//!
//! (`DATA_DIR/drills/GROUP.json`, beside them, is the test failover record of
//! `crate::metrics::drills`; the directories here never end in `.json`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::files::{create_dir_durable, write_atomic};

/// Runs kept per group (the newest; the verified point's run is kept besides): a drill every
/// few minutes must not fill the data dir.
pub const KEEP_RUNS: usize = 20;

/// Most bytes of a probe's output kept in `summary.json` (the whole is in its own file).
pub const OUTPUT_KEEP: usize = 4096;

/// One probe's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The probe as configured (`console=...`, `fs-check root`).
    pub probe: String,
    pub ok: bool,
    /// What it saw (the matching line, the command's output, the checker's report), cut to
    /// [`OUTPUT_KEEP`] bytes.
    pub output: String,
    pub took_ms: u64,
}

/// One drill run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub group: String,
    /// The run's directory name (its start, unix ms).
    pub run: String,
    /// Started by the schedule (else by hand).
    pub scheduled: bool,
    /// The point as chosen (`latest-app-consistent`, or what was asked for).
    pub point: String,
    pub seq: u64,
    /// The point's source time (unix ms), when the journal knows it.
    pub point_time_ms: Option<u64>,
    /// Why the point is not what one expects (no app-consistent point: latest instead).
    pub note: Option<String>,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub ok: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub probes: Vec<ProbeResult>,
    /// How long each step took (`disks`, `boot`, `probes`, `cleanup`), ms.
    pub timings: BTreeMap<String, u64>,
    /// The evidence directory.
    pub evidence: PathBuf,
    pub console_log: Option<PathBuf>,
    pub screenshot: Option<PathBuf>,
    /// Booted in a network namespace of its own.
    pub isolated: bool,
}

impl DrillRecord {
    /// One line: what the drill proved, or why not.
    pub fn summary(&self) -> String {
        let passed = self.probes.iter().filter(|p| p.ok).count();
        let head = format!(
            "{} seq {}: {}/{} probes passed",
            self.point,
            self.seq,
            passed,
            self.probes.len()
        );
        match &self.error {
            Some(e) => format!("{head}; failed: {e}"),
            None => head,
        }
    }
}

/// The last point a drill proved recoverable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedPoint {
    pub seq: u64,
    pub point: String,
    pub point_time_ms: Option<u64>,
    /// When the drill that verified it ended.
    pub verified_ms: u64,
    pub evidence: PathBuf,
    pub summary: String,
}

/// A group's drill state, as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDrills {
    pub last: Option<DrillRecord>,
    pub verified: Option<VerifiedPoint>,
}

/// Every group's last drill and verified point, in memory and in `DATA_DIR/drills`.
#[derive(Debug)]
pub struct Evidence {
    pub dir: PathBuf,
    groups: Mutex<BTreeMap<String, GroupDrills>>,
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
    let bytes = std::fs::read(p).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "skipping an unreadable drill record");
            None
        }
    }
}

impl Evidence {
    /// Reads what earlier runs left in `DATA_DIR/drills/*/`.
    pub fn load(data_dir: &Path) -> Evidence {
        let dir = data_dir.join("drills");
        let mut groups = BTreeMap::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Some(name) = p.file_name().and_then(|s| s.to_str()) else {
                continue;
            };
            if !p.is_dir() || rewind_formats::validate_name(name).is_err() {
                continue;
            }
            let g = GroupDrills {
                last: read(&p.join("last.json")),
                verified: read(&p.join("verified.json")),
            };
            groups.insert(name.to_string(), g);
        }
        Evidence {
            dir,
            groups: Mutex::new(groups),
        }
    }

    /// A new run's directory (private, durable in its parent).
    pub fn new_run(&self, group: &str, started_ms: u64) -> Result<(String, PathBuf)> {
        let gdir = self.dir.join(group);
        for d in [&self.dir, &gdir] {
            create_dir_durable(d)?;
            crate::access::make_private_dir(d)?;
        }
        // Two runs in one millisecond cannot happen (one job per group), but a clock step back
        // could meet an old run's name: add a suffix rather than mix two runs' evidence.
        let mut run = started_ms.to_string();
        let mut n = 1;
        while gdir.join(&run).exists() {
            n += 1;
            run = format!("{started_ms}-{n}");
        }
        let rdir = gdir.join(&run);
        create_dir_durable(&rdir)?;
        crate::access::make_private_dir(&rdir)?;
        Ok((run, rdir))
    }

    /// Keep a finished run: its summary, the group's last drill and, when it passed, the
    /// group's verified point.
    pub fn finish(&self, rec: &DrillRecord) -> Result<()> {
        let json = serde_json::to_vec_pretty(rec)?;
        write_atomic(&rec.evidence.join("summary.json"), &json)
            .with_context(|| format!("writing the summary in {}", rec.evidence.display()))?;
        let gdir = self.dir.join(&rec.group);
        write_atomic(&gdir.join("last.json"), &json)?;
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let g = groups.entry(rec.group.clone()).or_default();
        g.last = Some(rec.clone());
        if rec.ok {
            let v = VerifiedPoint {
                seq: rec.seq,
                point: rec.point.clone(),
                point_time_ms: rec.point_time_ms,
                verified_ms: rec.ended_ms,
                evidence: rec.evidence.clone(),
                summary: rec.summary(),
            };
            write_atomic(&gdir.join("verified.json"), &serde_json::to_vec_pretty(&v)?)?;
            g.verified = Some(v);
        }
        let keep = g.verified.as_ref().map(|v| v.evidence.clone());
        drop(groups);
        prune(&gdir, keep.as_deref());
        Ok(())
    }

    /// A deleted group's drills: gone from memory and from disk (its evidence with it).
    pub fn forget(&self, group: &str) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(group);
        let d = self.dir.join(group);
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %d.display(), error = %e, "cannot remove a deleted group's drills")
            }
        }
    }

    pub fn get(&self, group: &str) -> GroupDrills {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    pub fn all(&self) -> BTreeMap<String, GroupDrills> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Remove all but the newest [`KEEP_RUNS`] run directories of a group (and `keep`). A run
/// that cannot be removed is logged and left.
fn prune(gdir: &Path, keep: Option<&Path>) {
    // Run names start with their start time in ms: numeric order is age order.
    let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(gdir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let ms = name.split('-').next()?.parse().ok()?;
            Some((ms, e.path()))
        })
        .collect();
    runs.sort();
    let old = runs.len().saturating_sub(KEEP_RUNS);
    for (_, p) in runs.into_iter().take(old) {
        if Some(p.as_path()) == keep {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(&p) {
            tracing::warn!(path = %p.display(), error = %e, "cannot remove an old drill's evidence");
        }
    }
}

/// Cut `s` to at most `max` bytes (on a character boundary), saying so.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dir: &Path, ok: bool, seq: u64) -> DrillRecord {
        DrillRecord {
            group: "web".into(),
            run: "1".into(),
            scheduled: false,
            point: "latest-app-consistent".into(),
            seq,
            point_time_ms: Some(5),
            note: None,
            started_ms: 1,
            ended_ms: 2,
            ok,
            error: (!ok).then(|| "probe console failed".into()),
            probes: vec![],
            timings: BTreeMap::new(),
            evidence: dir.to_path_buf(),
            console_log: None,
            screenshot: None,
            isolated: true,
        }
    }

    #[test]
    fn a_failed_drill_keeps_the_verified_point_and_both_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let ev = Evidence::load(dir.path());
        let (_, r1) = ev.new_run("web", 10).unwrap();
        ev.finish(&record(&r1, true, 7)).unwrap();
        let (run2, r2) = ev.new_run("web", 10).unwrap();
        assert_eq!(run2, "10-2");
        ev.finish(&record(&r2, false, 9)).unwrap();
        let again = Evidence::load(dir.path());
        let g = again.get("web");
        assert!(!g.last.as_ref().unwrap().ok);
        assert_eq!(g.last.unwrap().seq, 9);
        assert_eq!(g.verified.as_ref().unwrap().seq, 7);
        assert!(r1.join("summary.json").exists());
        assert_eq!(cut("abcdef", 3), "abc... (6 bytes in all)");
        // Many failed runs later: the newest KEEP_RUNS stay, and the verified point's run.
        for i in 0..KEEP_RUNS as u64 + 5 {
            let (_, r) = ev.new_run("web", 100 + i).unwrap();
            ev.finish(&record(&r, false, 9)).unwrap();
        }
        let runs = std::fs::read_dir(dir.path().join("drills/web"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(runs, KEEP_RUNS + 1);
        assert!(r1.join("summary.json").exists());
        assert!(!r2.exists());
        ev.forget("web");
        assert_eq!(ev.get("web"), GroupDrills::default());
        assert!(!dir.path().join("drills/web").exists());
    }
}
