//! Failover operations of the master target: test failover, planned and unplanned failover
//! (promotion), change of point, commit, reverse replication and adoption.
//!
//! Each operation checks what it can up front (so a refused one changes nothing), then runs as a
//! job (`crate::jobs`) with progress. What a group's failovers left in place is kept in
//! `DATA_DIR/failover/GROUP.json` (`state`).
//!
//! - Test failover: writable overlays of one point (`GROUP/DISK@test`), loop devices, and the
//!   configured boot command; replication goes on meanwhile. Cleanup discards them.
//! - Promotion (planned: the agent drains first; unplanned: a chosen point): the group's
//!   generation is bumped (the old source is fenced), and live disks (`GROUP/DISK@live`) are made.
//! - Commit: the point becomes permanent and the history after it is discarded.
//! - Reverse: an agent here protects the live disks and replicates them to another site.
//! - Adopt: a replica whose base is a copy of existing disks (the old source, or the live disks
//!   here), so the first replication into it only compares and sends what differs.

pub mod adopt;
pub mod boot;
pub(crate) mod disks;
pub mod plan_ops;
mod promote;
pub mod reverse;
pub mod state;
mod test_failover;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

use crate::jobs::Jobs;
use crate::refused::Refused;
use crate::store::points::{long_term_may_answer, PointSpec};
use crate::store::{Store, StoreError};
use crate::views::attach::Attachments;
use crate::views::exports::Exports;
use boot::BootProcesses;
use rewind_formats::Seq;
use state::GroupFailover;

/// Why a failover operation did not start (or, for `configure`, did not change) anything; the
/// control API answers each kind with its own status.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The group is busy with another job.
    #[error(transparent)]
    Busy(#[from] crate::jobs::Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

pub struct Failovers {
    pub exports: Arc<Exports>,
    pub views: Option<PathBuf>,
    pub attachments: Arc<Attachments>,
    pub jobs: Arc<Jobs>,
    pub boots: BootProcesses,
    /// Each group's last test failover, for monitoring.
    pub drills: crate::metrics::drills::Drills,
    /// `DATA_DIR/failover`.
    dir: PathBuf,
    /// The NBD server's bound addresses (`HOST:PORT`, `unix:PATH`), for the URIs handed out.
    nbd: Vec<String>,
    /// For the async parts (draining the agent) called from job threads.
    rt: tokio::runtime::Handle,
    state: Mutex<BTreeMap<String, GroupFailover>>,
}

impl Failovers {
    /// Load the groups' failover state and bring back what a restart took away: the loop
    /// devices of test failovers and live disks, and reverse-replication agents.
    pub fn load(
        exports: Arc<Exports>,
        views: Option<PathBuf>,
        attachments: Arc<Attachments>,
        nbd: Vec<String>,
    ) -> Result<Arc<Failovers>> {
        let dir = exports.store.dir.join("failover");
        let drills = crate::metrics::drills::Drills::load(&exports.store.dir);
        let mut map = BTreeMap::new();
        for s in state::load_all(&dir)? {
            map.insert(s.group.clone(), s);
        }
        let events = exports.store.events.clone();
        Ok(Arc::new(Failovers {
            exports,
            views,
            attachments,
            jobs: Arc::new(Jobs::new(events)),
            boots: BootProcesses::default(),
            drills,
            dir,
            nbd,
            rt: tokio::runtime::Handle::current(),
            state: Mutex::new(map),
        }))
    }

    /// After the view tree is mounted: drop failover disks no state names (a crash between
    /// making them and recording them), re-attach loop devices and restart reverse agents.
    pub fn resume(&self) {
        self.drop_orphans();
        for g in self.groups() {
            let mut s = self.get(&g);
            for set in [s.test.as_mut(), s.promotion.as_mut().map(|p| &mut p.set)]
                .into_iter()
                .flatten()
            {
                // A boot command the previous daemon started lost its disks with it.
                if let Some(b) = set.boot.take() {
                    boot::stop_leftover(b.pid, b.started, Duration::from_secs(5));
                }
                if let Err(e) = disks::reattach(self, &g, set) {
                    tracing::error!(group = %g, error = %e, "cannot re-attach a failover's loop devices");
                }
            }
            if let Some(r) = &s.reverse {
                // An agent the previous daemon started (a kill -9 leaves it running) holds the
                // state dir and writes to a loop device whose file is gone: stop it first.
                if let Some(pid) = r.pid {
                    boot::stop_leftover(pid, r.pid_started, Duration::from_secs(10));
                }
            }
            // Recorded before the reverse agent starts: it takes its disks from this state.
            if let Err(e) = self.put(s.clone()) {
                tracing::error!(group = %g, error = %e, "cannot save failover state");
                continue;
            }
            if let Some(mut r) = s.reverse.take() {
                reverse::agent_only(self, &g, true);
                match reverse::spawn_agent(self, &g, &r) {
                    Ok(pid) => {
                        r.pid = Some(pid);
                        r.pid_started = rewind_linux::process::start_time(pid);
                    }
                    Err(e) => {
                        tracing::error!(group = %g, error = %e, "cannot restart reverse replication");
                        r.pid = None;
                    }
                }
                if let Err(e) = self.update(&g, |s| s.reverse = Some(r)) {
                    tracing::error!(group = %g, error = %e, "cannot save failover state");
                }
            }
        }
    }

    /// Overlays named like a test failover's or a live disk that no group's state records were
    /// made by an operation a crash cut short: nothing refers to them, and a retry needs the name.
    fn drop_orphans(&self) {
        let known: Vec<String> = self
            .list()
            .iter()
            .flat_map(|s| {
                [s.test.as_ref(), s.promotion.as_ref().map(|p| &p.set)]
                    .into_iter()
                    .flatten()
                    .flat_map(|set| set.disks.iter().map(|d| d.overlay.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for o in self.exports.overlays.list() {
            let name = &o.meta.name;
            let ours = name.starts_with("failover-test.") || name.starts_with("live.");
            if ours && !known.contains(name) {
                tracing::warn!(overlay = %name, "removing a failover disk no failover records (left by a crash)");
                if let Err(e) = self.exports.overlays.delete(name) {
                    tracing::error!(overlay = %name, error = %e, "cannot remove it");
                }
            }
        }
    }

    /// Daemon shutdown: stop reverse agents (they write through this daemon's loop devices) and
    /// boot commands, before the loop devices and the view tree go away.
    pub fn shutdown(&self) {
        for g in self.groups() {
            if let Some(r) = self.get(&g).reverse {
                if let Some(pid) = r.pid {
                    reverse::stop_agent(self, pid);
                }
            }
        }
        self.boots.stop_all();
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.exports.store
    }

    fn groups(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("failover lock")
            .keys()
            .cloned()
            .collect()
    }

    /// The group's failover state (empty if none).
    pub fn get(&self, group: &str) -> GroupFailover {
        self.state
            .lock()
            .expect("failover lock")
            .get(group)
            .cloned()
            .unwrap_or_else(|| empty(group))
    }

    pub fn list(&self) -> Vec<GroupFailover> {
        self.state
            .lock()
            .expect("failover lock")
            .values()
            .cloned()
            .collect()
    }

    /// Persist, then publish, a group's new state.
    fn put(&self, s: GroupFailover) -> Result<()> {
        let group = s.group.clone();
        self.update(&group, move |cur| *cur = s).map(|_| ())
    }

    /// Change a group's state under the lock, and persist it (for changes outside the group's
    /// job, which could otherwise overwrite the job's own update).
    fn update(&self, group: &str, f: impl FnOnce(&mut GroupFailover)) -> Result<GroupFailover> {
        let mut map = self.state.lock().expect("failover lock");
        let mut s = map.get(group).cloned().unwrap_or_else(|| empty(group));
        f(&mut s);
        state::save(&self.dir, &s)?;
        if s.is_empty() {
            map.remove(group);
        } else {
            map.insert(group.into(), s.clone());
        }
        Ok(s)
    }

    /// Set (or clear, with None) the boot command the group's failovers run. Its placeholders
    /// are checked now, against the group's disks.
    pub fn configure(
        &self,
        group: &str,
        boot: Option<String>,
    ) -> Result<GroupFailover, FailoverError> {
        let g = self.store().group(group)?;
        if let Some(cmd) = &boot {
            let t = crate::plan::BootCommand::parse(cmd)
                .map_err(|(at, m)| Refused::Invalid(format!("boot command, at byte {at}: {m}")))?;
            for d in t.disks() {
                if g.disk_index(d).is_none() {
                    return Err(Refused::Invalid(format!(
                        "boot command: group {group} has no disk {d}"
                    ))
                    .into());
                }
            }
        }
        let boot = boot
            .filter(|c| !c.trim().is_empty())
            .map(|command| state::BootConfig { command });
        Ok(self.update(group, |s| s.boot = boot)?)
    }

    /// Set (or clear, with None) the group's drill configuration (`crate::drill::config`),
    /// kept beside its boot command. Validated by the caller.
    pub fn set_drill(
        &self,
        group: &str,
        drill: Option<crate::drill::config::DrillConfig>,
    ) -> Result<GroupFailover, FailoverError> {
        self.store().group(group)?;
        Ok(self.update(group, |s| s.drill = drill)?)
    }

    /// The group must exist: every operation starts here.
    pub(crate) fn check_group(&self, group: &str) -> Result<(), Refused> {
        self.store()
            .group(group)
            .map(|_| ())
            .map_err(|e| Refused::NotFound(format!("{e} (see `rewind groups`)")))
    }

    /// The seq a point names in a group, refused (with what to pick instead) if it is not
    /// recoverable, too old or unknown.
    pub(crate) fn resolve(&self, group: &str, point: &str) -> Result<u64, Refused> {
        let spec = PointSpec::parse(point).map_err(|e| Refused::Invalid(e.to_string()))?;
        let g = self
            .store()
            .group(group)
            .map_err(|e| Refused::NotFound(e.to_string()))?;
        let seq = match g.resolve(&spec) {
            Ok(seq) => seq,
            // Older than the window: a long-term point kept for every disk of the group.
            Err(e) if long_term_may_answer(&e, &spec) => self
                .long_term_seq(&g, &spec)
                .ok_or_else(|| Refused::Conflict(format!("group {group}: {e}")))?,
            Err(e) => return Err(Refused::Conflict(format!("group {group}: {e}"))),
        };
        if seq.0 == 0 {
            return Err(Refused::Conflict(format!(
                "group {group} holds no replicated data yet: nothing to fail over to"
            )));
        }
        Ok(seq.0)
    }

    /// The long-term point `spec` names on every disk of `g`, if all disks resolve to one seq
    /// (the archiver keeps each point for every disk).
    fn long_term_seq(&self, g: &crate::store::group::Group, spec: &PointSpec) -> Option<Seq> {
        let ltr = self.store().ltr()?;
        let seqs: std::collections::BTreeSet<u64> = g
            .disk_names()
            .iter()
            .map(|d| ltr.resolve(&g.name, d, spec).map(|k| k.seq))
            .collect::<Option<_>>()?;
        (seqs.len() == 1).then(|| Seq(*seqs.first().expect("one")))
    }

    /// The NBD URI of an export, on the first address the NBD server listens on.
    fn nbd_uri(&self, export: &str) -> Option<String> {
        let addr = self.nbd.first()?;
        Some(match addr.strip_prefix("unix:") {
            Some(path) => format!("nbd+unix:///{export}?socket={path}"),
            None => format!("nbd://{addr}/{export}"),
        })
    }

    /// The NBD URI of an export on the server's unix socket, if it has one (a VM in a network
    /// namespace of its own reaches no TCP address of the host, but does reach a socket path).
    pub(crate) fn nbd_unix_uri(&self, export: &str) -> Option<String> {
        let path = self.nbd.iter().find_map(|a| a.strip_prefix("unix:"))?;
        Some(format!("nbd+unix:///{export}?socket={path}"))
    }

    fn boot_log(&self, group: &str, what: &str) -> PathBuf {
        self.dir.join(format!("{group}.{what}.boot.log"))
    }
}

/// The state of a group no failover has touched.
fn empty(group: &str) -> GroupFailover {
    GroupFailover {
        group: group.into(),
        ..Default::default()
    }
}
