//! Adoption: a replica whose base images are a copy of disks that already exist here — the old
//! source disks at the original site, or this site's live disks after a failback — so the first
//! agent to replicate into it compares block hashes and sends only what differs.
//!
//! The group is built in a directory of its own and moved into `DATA_DIR/groups` only once
//! complete (base images fsynced, manifest last). Its manifest says `adopted`: until the first
//! record arrives the target answers HELLO with "resync needed", which makes the agent compare
//! every block instead of running a fresh initial sync (which skips zero blocks: wrong over a
//! base that is not empty). Its generation is 0 until the first agent names one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::disks;
use super::{FailoverError, Failovers};
use crate::jobs::{Job, JobInfo, JobResult};
use crate::names::{check, disk_source};
use crate::refused::Refused;
use crate::store::group::{base_path, journal_dir};
use crate::store::manifest::{DiskManifest, Manifest, MANIFEST_VERSION};
use rewind_formats::NameKind;
use rewind_linux::clock::now_ms;

const CHUNK: usize = 1 << 20;

/// Reads `buf.len()` bytes at an offset of a disk.
pub type ReadAt = Box<dyn Fn(&mut [u8], u64) -> std::io::Result<()> + Send>;

/// Where an adopted disk's bytes come from.
pub struct Source {
    pub name: String,
    pub size_bytes: u64,
    pub read_at: ReadAt,
}

/// A raw image file or block device as a source.
pub fn file_source(name: &str, path: &Path) -> Result<Source> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = if f.metadata()?.file_type().is_file() {
        f.metadata()?.len()
    } else {
        // A block device: its size is where a seek to the end lands.
        use std::io::Seek;
        let mut f2 = &f;
        f2.seek(std::io::SeekFrom::End(0))?
    };
    if size == 0 || size % 512 != 0 {
        bail!(
            "{}: size {size} is not a positive multiple of 512",
            path.display()
        );
    }
    let path = path.to_path_buf();
    Ok(Source {
        name: name.into(),
        size_bytes: size,
        read_at: Box::new(move |buf, off| {
            f.read_exact_at(buf, off)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        }),
    })
}

/// Build a complete adopted group in `dir` (which must not exist). `progress(done, total)`.
/// `owner`: the agent that will replicate into it (its HELLO is the only one accepted).
pub fn build_group_dir(
    dir: &Path,
    group: &str,
    owner: &str,
    sources: &[Source],
    retention_ms: u64,
    progress: &dyn Fn(u64, u64),
) -> Result<()> {
    check(NameKind::Group, group)?;
    check(NameKind::Agent, owner)?;
    for s in sources {
        check(NameKind::Disk, &s.name)?;
    }
    if sources.is_empty() {
        bail!("adopting group {group}: no disks given");
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    fs::create_dir_all(dir.join("base"))?;
    fs::create_dir_all(journal_dir(dir))?;
    let total: u64 = sources.iter().map(|s| s.size_bytes).sum();
    let mut done = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for s in sources {
        let p = base_path(dir, &s.name);
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        out.set_len(s.size_bytes)?;
        let mut off = 0u64;
        while off < s.size_bytes {
            let n = (s.size_bytes - off).min(CHUNK as u64) as usize;
            (s.read_at)(&mut buf[..n], off)
                .with_context(|| format!("reading disk {} at offset {off}", s.name))?;
            // The base is sparse: zero chunks stay holes.
            if buf[..n].iter().any(|b| *b != 0) {
                out.write_all_at(&buf[..n], off)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            off += n as u64;
            done += n as u64;
            progress(done, total);
        }
        out.sync_all()
            .with_context(|| format!("fsync {}", p.display()))?;
    }
    crate::store::files::sync_dir(&dir.join("base"))?;
    let m = Manifest {
        version: MANIFEST_VERSION,
        group: group.into(),
        disks: sources
            .iter()
            .map(|s| DiskManifest {
                name: s.name.clone(),
                size_bytes: s.size_bytes,
            })
            .collect(),
        generation: 0,
        retention_ms,
        horizon_seq: 0,
        horizon_ms: 0,
        horizon_tags: Vec::new(),
        created_ms: now_ms(),
        owner: Some(owner.into()),
        history_end: None,
        adopted: true,
        fenced_reason: None,
        epoch: 0,
    };
    m.store(dir)?;
    crate::store::files::sync_dir(dir)?;
    Ok(())
}

/// A scratch directory for building a group, outside `groups/` so a crash never leaves a
/// half-built group to be loaded. The name is checked here too: the directory is removed before
/// a build, and `..` would name the data directory itself.
pub fn building_dir(data_dir: &Path, group: &str) -> Result<PathBuf> {
    check(NameKind::Group, group)?;
    Ok(data_dir.join("adopting").join(group))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdoptRequest {
    /// NAME=PATH: raw images or block devices to adopt as a new group's disks.
    #[serde(default)]
    pub disks: Vec<String>,
    /// Adopt this site's live disks of the (committed, failed-over) group instead.
    #[serde(default)]
    pub from_live: bool,
    /// Retention of the new group [default: the daemon's].
    #[serde(default)]
    pub retention: Option<String>,
    /// The agent that will replicate into the group: it owns it, and no other agent's HELLO is
    /// accepted for it. Required.
    #[serde(default)]
    pub agent: Option<String>,
}

impl Failovers {
    pub fn adopt(
        self: &Arc<Self>,
        group: &str,
        req: AdoptRequest,
    ) -> Result<JobInfo, FailoverError> {
        // Names first: the job removes a scratch directory named after the group.
        check(NameKind::Group, group)?;
        let agent = req.agent.clone().ok_or_else(|| {
            Refused::Invalid(format!(
                "adopting {group}: name the agent that will replicate into it (--agent NAME); it owns the group"
            ))
        })?;
        check(NameKind::Agent, &agent)?;
        for d in &req.disks {
            disk_source(d)?;
        }
        let retention_ms = match &req.retention {
            Some(r) => crate::limits::retention_ms(r).map_err(Refused::Invalid)?,
            None => self.store().default_retention_ms(),
        };
        let me = self.clone();
        let g = group.to_string();
        if req.from_live {
            if !req.disks.is_empty() {
                return Err(Refused::Invalid("give disks or from_live, not both".into()).into());
            }
            self.check_group(group)?;
            let s = self.get(group);
            let p = match &s.promotion {
                Some(p) if p.committed => p,
                _ => {
                    return Err(Refused::Conflict(format!(
                        "group {group} has no committed failover here: only live disks of a committed failover can be adopted"
                    ))
                    .into())
                }
            };
            // The live disks stop being disks once adopted: only after the workload moved away
            // (failback fenced the reverse agent), or with nothing using them.
            match &s.reverse {
                Some(r) => {
                    let fenced = self
                        .reverse_status(group)
                        .is_some_and(|st| st.fenced.is_some());
                    if !fenced {
                        return Err(Refused::Conflict(format!(
                            "group {group} replicates in reverse to {} and its agent is not fenced: the workload still runs here;                              fail back first (`rewind failover planned {group}` at the other site) or `rewind reverse {group} --stop`",
                            r.target
                        ))
                        .into());
                    }
                }
                None => disks::check_unused(self, &p.set)
                    .map_err(|e| Refused::Conflict(format!("{e:#}")))?,
            }
            return Ok(self.jobs.spawn("adopt-live", group, move |job| {
                me.adopt_live(&g, &agent, retention_ms, job)
            })?);
        }
        if req.disks.is_empty() {
            return Err(
                Refused::Invalid("adopt needs disks (NAME=PATH) or from_live".into()).into(),
            );
        }
        if self.store().group(group).is_ok() {
            return Err(Refused::Conflict(format!(
                "group {group} already exists here; adopt makes a new group"
            ))
            .into());
        }
        let mut sources = Vec::new();
        for d in &req.disks {
            let (name, path) = disk_source(d)?;
            sources.push(
                file_source(name, Path::new(path))
                    .map_err(|e| Refused::Invalid(format!("{e:#}")))?,
            );
        }
        let dir = building_dir(&me.store().dir, &g)?;
        Ok(self.jobs.spawn("adopt", group, move |job| {
            let _ = fs::remove_dir_all(&dir);
            build_group_dir(&dir, &g, &agent, &sources, retention_ms, &|d, t| {
                job.progress(
                    d as f64 * 95.0 / t as f64,
                    "copying the disks into the base",
                );
            })?;
            me.store().install_group(&g, &dir, false)?;
            Ok(JobResult {
                adopted: Some(req.disks),
                ..JobResult::of(g)
            })
        })?)
    }

    /// Replace the group by one whose base is this site's live disks: the way back after a
    /// failback, when the other site becomes the source again.
    fn adopt_live(
        &self,
        group: &str,
        agent: &str,
        retention_ms: u64,
        job: &Job,
    ) -> Result<JobResult> {
        let dir = building_dir(&self.store().dir, group)?;
        let mut s = self.get(group);
        if let Some(r) = s.reverse.take() {
            job.progress(2.0, "stopping reverse replication");
            if let Some(pid) = r.pid {
                super::reverse::stop_agent(self, pid);
            }
            super::reverse::remove_state_dir(&r);
        }
        let p = s.promotion.clone().context("promotion vanished")?;
        self.stop_boot(&p.set);
        job.progress(5.0, "detaching the live disks");
        for d in &p.set.disks {
            if let Some(dev) = &d.loop_device {
                crate::views::attach::detach(&self.exports, &self.attachments, dev)?;
            }
        }
        let mut sources = Vec::new();
        for d in &p.set.disks {
            let o = self.exports.overlays.get(&d.overlay)?;
            sources.push(Source {
                name: d.disk.clone(),
                size_bytes: o.size_bytes(),
                read_at: Box::new(move |buf, off| {
                    o.read_at(buf, off).map_err(std::io::Error::other)
                }),
            });
        }
        let _ = fs::remove_dir_all(&dir);
        build_group_dir(&dir, group, agent, &sources, retention_ms, &|d, t| {
            job.progress(
                5.0 + d as f64 * 85.0 / t as f64,
                "copying the live disks into the base",
            );
        })?;
        drop(sources);
        job.progress(92.0, "replacing the group");
        // Installed before the live disks are dropped: a failure here leaves them as they were.
        self.store().install_group(group, &dir, true)?;
        let detached: Vec<_> = p
            .set
            .disks
            .iter()
            .cloned()
            .map(|mut d| {
                d.loop_device = None;
                d
            })
            .collect();
        disks::drop_disks(self, &detached);
        s.promotion = None;
        self.put(s)?;
        Ok(JobResult {
            adopted_live_seq: Some(p.set.seq),
            ..JobResult::of(group)
        })
    }
}

/// A retention window given as a Duration (already parsed by clap), in milliseconds.
fn check_retention(d: std::time::Duration) -> Result<u64> {
    if d.is_zero() || d > crate::limits::MAX_RETENTION {
        bail!(
            "retention {}: give more than 0 and at most {}",
            humantime::format_duration(d),
            humantime::format_duration(crate::limits::MAX_RETENTION)
        );
    }
    Ok(d.as_millis() as u64)
}

/// `rewind-mtd adopt`: build the group with the daemon stopped (the data directory's lock is
/// taken), with a progress bar.
pub fn offline(
    data_dir: &Path,
    group: &str,
    agent: &str,
    disks: &[String],
    retention: std::time::Duration,
) -> Result<()> {
    // Names before anything touches a path.
    check(NameKind::Group, group)?;
    check(NameKind::Agent, agent)?;
    let mut parsed = Vec::new();
    for d in disks {
        parsed.push(disk_source(d)?);
    }
    let retention_ms = check_retention(retention)?;
    fs::create_dir_all(data_dir.join("groups"))?;
    let _lock = crate::store::lock_dir(data_dir).with_context(|| {
        format!(
            "{} is in use by a running rewind-mtd: use `rewind adopt {group} --disk ...` through it",
            data_dir.display()
        )
    })?;
    let dest = data_dir.join("groups").join(group);
    if dest.exists() {
        bail!("group {group} already exists in {}", data_dir.display());
    }
    let mut sources = Vec::new();
    for (name, path) in parsed {
        sources.push(file_source(name, Path::new(path))?);
    }
    let total: u64 = sources.iter().map(|s| s.size_bytes).sum();
    let bar = crate::views::dump::progress_bar(total);
    let dir = building_dir(data_dir, group)?;
    let _ = fs::remove_dir_all(&dir);
    build_group_dir(&dir, group, agent, &sources, retention_ms, &|d, _| {
        bar.set_position(d)
    })?;
    fs::rename(&dir, &dest).with_context(|| format!("moving into {}", dest.display()))?;
    crate::store::files::sync_dir(&data_dir.join("groups"))?;
    bar.finish_and_clear();
    eprintln!(
        "adopted {} disk(s) as group {group}: the first agent compares block hashes and sends only what differs",
        sources.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    #[test]
    fn a_built_group_is_sparse_adopted_and_installed_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let img = dir.path().join("disk.img");
        let mut bytes = vec![0u8; 4 << 20];
        bytes[(2 << 20) + 5] = 7;
        fs::write(&img, &bytes).unwrap();
        let src = file_source("sda", &img).unwrap();
        // Built, then the daemon died before the install's renames were done: one half-moved
        // replaced group too.
        let built = building_dir(&data, "g").unwrap();
        build_group_dir(&built, "g", "a1", &[src], 60_000, &|_, _| {}).unwrap();
        fs::create_dir_all(data.join("groups")).unwrap();
        fs::create_dir_all(data.join("replaced-g-1/base")).unwrap();
        let base = base_path(&built, "sda");
        assert_eq!(fs::read(&base).unwrap(), bytes);
        // Zero chunks stay holes.
        use std::os::unix::fs::MetadataExt;
        assert!(fs::metadata(&base).unwrap().blocks() * 512 < 2 << 20);

        let store = Store::open(&data, StoreOptions::default()).unwrap();
        let g = store.group("g").expect("installed at open");
        let m = g.manifest();
        assert!(m.adopted);
        assert_eq!(m.generation, 0);
        assert_eq!(m.owner.as_deref(), Some("a1"));
        assert!(g.adopt_pending());
        assert!(!data.join("replaced-g-1").exists());
        assert!(!built.exists());
    }

    #[test]
    fn bad_sources_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("odd.img");
        fs::write(&img, vec![1u8; 1000]).unwrap();
        let e = file_source("sda", &img).err().unwrap().to_string();
        assert!(e.contains("multiple of 512"), "{e}");
        let e = file_source("sda", &dir.path().join("nope")).err().unwrap();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
    }
}
