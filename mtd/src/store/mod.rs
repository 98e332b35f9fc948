//! The master target's store: every replicated group with its journal, base images and points.
//!
//! On disk:
//! ```text
//! DATA_DIR/LOCK                                  flock'd by the serving daemon
//! DATA_DIR/groups/GROUP/group.json               manifest (disks, generation, retention, horizon)
//! DATA_DIR/groups/GROUP/base/DISK.img            base image: the disk as of the horizon (sparse)
//! DATA_DIR/groups/GROUP/journal/seg-NNNNNNNN.rwj journal segments, every record since the horizon
//! ```

pub mod engine;
mod error;
pub mod group;
pub mod health;
pub mod index;
pub mod ingest;
pub mod manifest;
pub mod merger;
pub mod points;
pub mod quota;
pub mod segment_file;
pub mod writer;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rewind_formats::message::{ErrorCode, Hello, HelloGroup};
use tokio::sync::mpsc;

pub use error::{Result, StoreError};

use self::engine::EngineKind;
use self::group::Group;
use self::health::Health;
use self::manifest::{DiskManifest, Manifest, MANIFEST_VERSION};
use self::quota::Quotas;
use self::segment_file::LoadMode;
use self::writer::{AppendReq, Writer, WriterConfig, WriterMsg};
use rewind_linux::clock::now_ms;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub engine: EngineKind,
    pub writer: WriterConfig,
    /// Retention window given to groups created by a first HELLO.
    pub default_retention: Duration,
    pub merge_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            engine: EngineKind::Uring,
            writer: WriterConfig::default(),
            default_retention: Duration::from_secs(24 * 3600),
            merge_interval: Duration::from_secs(1),
        }
    }
}

/// Why a group was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Something uses the group (`by` says what): nothing was changed.
    #[error("group {group} is in use: {by}")]
    InUse { group: String, by: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a HELLO was refused: the code for the ERROR frame and a message for the peer and the log.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

pub struct Store {
    pub dir: PathBuf,
    mode: LoadMode,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    pub health: Arc<Health>,
    writer_tx: Option<mpsc::Sender<WriterMsg>>,
    opts: StoreOptions,
    _lock: Option<nix::fcntl::Flock<File>>,
}

impl Store {
    /// Open (or create) a data directory for serving: takes its lock, repairs torn segment tails,
    /// finishes interrupted merges, and starts the writer and merger threads.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Arc<Store>> {
        let groups_dir = dir.join("groups");
        fs::create_dir_all(&groups_dir)
            .map_err(StoreError::io("create data directory", &groups_dir))?;
        crate::access::make_private_dir(dir).map_err(StoreError::io("chmod 0700", dir))?;
        let lock = lock_dir(dir)?;
        finish_installs(dir)?;
        let groups = load_groups(&groups_dir, LoadMode::Repair)?;
        for g in groups.values() {
            merger::finish_interrupted(g)?;
        }
        let engine = engine::make_engine(opts.engine)
            .map_err(StoreError::io("set up the io engine for", dir))?;
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel(64);
        let writer = Writer::new(engine, opts.writer.clone(), health.clone());
        std::thread::Builder::new()
            .name("rewind-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::io("spawn writer thread for", dir))?;
        let store = Arc::new(Store {
            dir: dir.to_path_buf(),
            mode: LoadMode::Repair,
            groups: RwLock::new(groups),
            health,
            writer_tx: Some(tx.clone()),
            opts,
            _lock: Some(lock),
        });
        spawn_ticker(tx.downgrade());
        spawn_merger(Arc::downgrade(&store), store.opts.merge_interval);
        Ok(store)
    }

    /// Open a data directory for reading only (inspect, dump): nothing on disk is changed.
    pub fn open_readonly(dir: &Path) -> Result<Store> {
        let groups_dir = dir.join("groups");
        if !groups_dir.is_dir() {
            return Err(StoreError::Invalid {
                what: "data directory",
                why: format!(
                    "{} holds no rewind store (no groups/ directory)",
                    dir.display()
                ),
            });
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            mode: LoadMode::ReadOnly,
            groups: RwLock::new(load_groups(&groups_dir, LoadMode::ReadOnly)?),
            health: Arc::new(Health::default()),
            writer_tx: None,
            opts: StoreOptions::default(),
            _lock: None,
        })
    }

    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .expect("groups lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn group(&self, name: &str) -> Result<Arc<Group>> {
        self.groups
            .read()
            .expect("groups lock")
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownGroup(name.into()))
    }

    /// Check a HELLO's group against the store (creating it on first contact) with the default
    /// quotas; returns the group and its generation. See [`Store::admit_hello`].
    pub fn hello_group(
        &self,
        hg: &HelloGroup,
        agent: &str,
    ) -> std::result::Result<(Arc<Group>, u64), Refusal> {
        let hello = Hello {
            agent: agent.to_string(),
            groups: vec![hg.clone()],
        };
        let mut out = self.admit_hello(&hello, agent, &Quotas::default())?;
        Ok(out.remove(0))
    }

    /// Admit a HELLO: every group it names is checked first (shape, quotas, owner, disks,
    /// generation) and only when all pass are the missing groups created and anything recorded,
    /// so a refused HELLO creates and changes nothing. Returns each group and its generation, in
    /// the HELLO's order. Where the agent resumes is decided once queued writes are durable.
    ///
    /// Refusals never name another agent: the agent asking learns that a group is not its own,
    /// not whose it is.
    pub fn admit_hello(
        &self,
        hello: &Hello,
        agent: &str,
        q: &Quotas,
    ) -> std::result::Result<Vec<(Arc<Group>, u64)>, Refusal> {
        let refuse = |code, message: String| Refusal { code, message };
        if self.mode != LoadMode::Repair {
            return Err(refuse(ErrorCode::Internal, "store is read-only".into()));
        }
        for hg in &hello.groups {
            check_hello_shape(hg, q).map_err(|m| refuse(ErrorCode::Protocol, m))?;
        }
        // Held until the new groups are in the table: two HELLOs cannot both pass the group
        // quota, or both create one name.
        let mut groups = self.groups.write().expect("groups lock");
        enum Plan {
            New,
            Existing {
                group: Arc<Group>,
                set_owner: bool,
                adopt_generation: bool,
                generation: u64,
            },
        }
        let mut plans = Vec::with_capacity(hello.groups.len());
        for hg in &hello.groups {
            match groups.get(&hg.group) {
                None => plans.push(Plan::New),
                Some(g) => {
                    let (set_owner, adopt_generation, generation) = check_existing(g, hg, agent)?;
                    plans.push(Plan::Existing {
                        group: g.clone(),
                        set_owner,
                        adopt_generation,
                        generation,
                    });
                }
            }
        }
        let new = plans.iter().filter(|p| matches!(p, Plan::New)).count();
        if new > 0 {
            let owned = groups
                .values()
                .filter(|g| {
                    g.state
                        .read()
                        .expect("group lock")
                        .manifest
                        .owner
                        .as_deref()
                        == Some(agent)
                })
                .count();
            if owned + new > q.max_groups_per_agent {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    format!(
                        "agent {agent} owns {owned} groups and the HELLO would create {new} more;                          at most {} per agent (--max-groups-per-agent)",
                        q.max_groups_per_agent
                    ),
                ));
            }
        }
        let mut out = Vec::with_capacity(plans.len());
        for (hg, plan) in hello.groups.iter().zip(plans) {
            match plan {
                Plan::New => {
                    let g = self.create_group(hg, agent)?;
                    groups.insert(hg.group.clone(), g.clone());
                    out.push((g, hg.generation));
                }
                Plan::Existing {
                    group,
                    set_owner,
                    adopt_generation,
                    generation,
                } => {
                    if set_owner {
                        group.set_owner(agent).map_err(|e| {
                            refuse(
                                ErrorCode::StoreFailed,
                                format!("recording the owner of group {}: {e}", hg.group),
                            )
                        })?;
                    }
                    if adopt_generation {
                        // An adopted group takes the generation of the first agent to feed it
                        // (the one reverse replication runs with the promotion's generation).
                        group.set_generation(hg.generation).map_err(|e| {
                            refuse(
                                ErrorCode::StoreFailed,
                                format!("recording the generation of group {}: {e}", hg.group),
                            )
                        })?;
                    }
                    out.push((group, generation));
                }
            }
        }
        Ok(out)
    }

    fn create_group(
        &self,
        hg: &HelloGroup,
        agent: &str,
    ) -> std::result::Result<Arc<Group>, Refusal> {
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            group: hg.group.clone(),
            disks: hg
                .disks
                .iter()
                .map(|d| DiskManifest {
                    name: d.disk.clone(),
                    size_bytes: d.size_bytes,
                })
                .collect(),
            generation: hg.generation,
            retention_ms: self.opts.default_retention.as_millis() as u64,
            horizon_seq: 0,
            horizon_ms: 0,
            horizon_tags: Vec::new(),
            created_ms: now_ms(),
            owner: Some(agent.to_string()),
            history_end: None,
            adopted: false,
            fenced_reason: None,
        };
        let g = Group::create(self.dir.join("groups").join(&hg.group), manifest).map_err(|e| {
            Refusal {
                code: ErrorCode::StoreFailed,
                message: format!("creating group {}: {e}", hg.group),
            }
        })?;
        tracing::info!(group = %hg.group, disks = hg.disks.len(), agent, "created group");
        Ok(g)
    }

    /// The retention given to new groups.
    pub fn default_retention_ms(&self) -> u64 {
        self.opts.default_retention.as_millis() as u64
    }

    /// Move a group built in `built` (adopt) into `DATA_DIR/groups` and load it. With `replace`,
    /// a group of the same name (idle: no agent feeds it) is replaced, and its directory deleted
    /// once the new one is in place.
    pub fn install_group(&self, name: &str, built: &Path, replace: bool) -> Result<Arc<Group>> {
        let groups_dir = self.dir.join("groups");
        let dest = groups_dir.join(name);
        let mut groups = self.groups.write().expect("groups lock");
        if let Some(old) = groups.get(name) {
            if !replace {
                return Err(StoreError::Invalid {
                    what: "group",
                    why: format!("group {name} already exists"),
                });
            }
            if let Some(h) = old.session.lock().expect("session lock").as_ref() {
                return Err(StoreError::Invalid {
                    what: "group",
                    why: format!(
                        "group {name} is being fed by agent {} ({})",
                        h.agent, h.peer
                    ),
                });
            }
        }
        let trash = self.dir.join(format!("replaced-{name}-{}", now_ms()));
        if dest.exists() {
            fs::rename(&dest, &trash).map_err(StoreError::io("move aside", &dest))?;
        }
        fs::rename(built, &dest).map_err(StoreError::io("move into place", &dest))?;
        crate::fsutil::sync_dir(&groups_dir)?;
        let g = Group::load(dest, LoadMode::Repair)?;
        groups.insert(name.to_string(), g.clone());
        drop(groups);
        if trash.exists() {
            if let Err(e) = fs::remove_dir_all(&trash) {
                tracing::warn!(dir = %trash.display(), error = %e, "cannot remove the replaced group");
            }
        }
        tracing::info!(group = name, replace, "installed an adopted group");
        Ok(g)
    }

    /// Delete a group: refused while a session feeds it or a view pins it (an NBD connection, a
    /// FUSE file, an overlay); the caller checks what the store does not know of (attachments,
    /// failover state) first. The group leaves the table, the writer seals and forgets its open
    /// segment, then its directory is renamed out of `groups/` (durably: from then on it is gone,
    /// whatever happens) and removed. A crash before the rename leaves the whole group; after
    /// it, the next start removes what is left (`deleted-*`).
    pub fn delete_group(&self, name: &str) -> Result<(), DeleteError> {
        rewind_formats::validate_name(name).map_err(|e| StoreError::Invalid {
            what: "group name",
            why: e.to_string(),
        })?;
        if name.starts_with('.') {
            return Err(StoreError::Invalid {
                what: "group name",
                why: format!("{name:?} may not start with a dot"),
            }
            .into());
        }
        if self.mode != LoadMode::Repair {
            return Err(StoreError::ReadOnly("the store is open read-only".into()).into());
        }
        let in_use = |by: String| DeleteError::InUse {
            group: name.to_string(),
            by,
        };
        let mut groups = self.groups.write().expect("groups lock");
        let g = groups
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownGroup(name.into()))?;
        if let Some(h) = g.session.lock().expect("session lock").as_ref() {
            return Err(in_use(format!(
                "agent {} is connected and feeding it ({}); stop the agent first",
                h.agent, h.peer
            )));
        }
        if let Some(seq) = g.oldest_pin() {
            return Err(in_use(format!(
                "a view of it at seq {} is open (an NBD connection, a FUSE file or an overlay);                  close it first",
                seq.0
            )));
        }
        groups.remove(name);
        drop(groups);
        let restore = |e: StoreError| {
            self.groups
                .write()
                .expect("groups lock")
                .insert(name.to_string(), g.clone());
            e
        };
        if let Some(tx) = &self.writer_tx {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            tx.blocking_send(WriterMsg::Forget {
                group: name.to_string(),
                done: done_tx,
            })
            .map_err(|_| restore(StoreError::Failed("journal writer stopped".into())))?;
            done_rx
                .recv()
                .map_err(|_| restore(StoreError::Failed("journal writer stopped".into())))?
                .map_err(restore)?;
        }
        let groups_dir = self.dir.join("groups");
        let trash = self.dir.join(format!("deleted-{name}-{}", now_ms()));
        fs::rename(&g.dir, &trash)
            .map_err(StoreError::io("move aside", &g.dir))
            .map_err(restore)?;
        crate::fsutil::sync_dir(&groups_dir)?;
        crate::fsutil::sync_dir(&self.dir)?;
        tracing::warn!(group = name, "group deleted");
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(dir = %trash.display(), error = %e, "cannot remove a deleted group's directory; the next start retries");
        }
        Ok(())
    }

    /// Queue a chunk for the writer (waits while the writer's queue is full: backpressure).
    pub async fn append(&self, req: AppendReq) -> Result<()> {
        if let Some(why) = self.health.failed() {
            return Err(StoreError::Failed(why));
        }
        let tx = self
            .writer_tx
            .as_ref()
            .ok_or_else(|| StoreError::Failed("store is read-only".into()))?;
        tx.send(WriterMsg::Append(req))
            .await
            .map_err(|_| StoreError::Failed("journal writer stopped".into()))
    }
}

/// Check a HELLO group against an existing group, changing nothing: returns whether to record
/// the agent as owner (a group without one), whether it takes the agent's generation (adopted,
/// never fed), and the generation the session runs at.
fn check_existing(
    group: &Group,
    hg: &HelloGroup,
    agent: &str,
) -> std::result::Result<(bool, bool, u64), Refusal> {
    let refuse = |code, message: String| Refusal { code, message };
    let st = group.state.read().expect("group lock");
    let m = &st.manifest;
    let set_owner = match &m.owner {
        Some(o) if o != agent => {
            return Err(refuse(
                ErrorCode::Forbidden,
                format!(
                    "group {} belongs to another agent; agent {agent} may not write to it",
                    hg.group
                ),
            ))
        }
        Some(_) => false,
        None => true,
    };
    if hg.disks.len() != m.disks.len() {
        return Err(refuse(
            ErrorCode::UnknownDisk,
            format!(
                "group {} has {} disks at the target; the agent named {}",
                hg.group,
                m.disks.len(),
                hg.disks.len()
            ),
        ));
    }
    for (d, md) in hg.disks.iter().zip(&m.disks) {
        if d.disk != md.name {
            return Err(refuse(
                ErrorCode::UnknownDisk,
                format!(
                    "group {} has no disk {} (its disks are {:?})",
                    hg.group,
                    d.disk,
                    m.disks.iter().map(|d| &d.name).collect::<Vec<_>>()
                ),
            ));
        }
        if d.size_bytes != md.size_bytes {
            return Err(refuse(
                ErrorCode::WrongDiskSize,
                format!(
                    "disk {}/{} is {} bytes at the target; the agent says {}",
                    hg.group, d.disk, md.size_bytes, d.size_bytes
                ),
            ));
        }
    }
    if m.adopted && m.generation == 0 {
        return Ok((set_owner, true, hg.generation));
    }
    if hg.generation < m.generation {
        return Err(refuse(
            ErrorCode::StaleGeneration,
            group::fenced_message(
                &hg.group,
                m.fenced_reason.as_deref(),
                hg.generation,
                m.generation,
            ),
        ));
    }
    if hg.generation > m.generation {
        return Err(refuse(
            ErrorCode::StaleGeneration,
            format!(
                "group {} is at generation {}; the agent's generation {} is unknown here",
                hg.group, m.generation, hg.generation
            ),
        ));
    }
    Ok((set_owner, false, m.generation))
}

fn check_hello_shape(hg: &HelloGroup, q: &Quotas) -> std::result::Result<(), String> {
    if hg.group.starts_with('.') {
        return Err(format!(
            "group name {:?} may not start with a dot",
            hg.group
        ));
    }
    if hg.disks.is_empty() {
        return Err(format!("group {} has no disks", hg.group));
    }
    if hg.disks.len() > q.max_disks_per_group {
        return Err(format!(
            "group {} has {} disks; at most {} per group (--max-disks-per-group)",
            hg.group,
            hg.disks.len(),
            q.max_disks_per_group
        ));
    }
    for (i, d) in hg.disks.iter().enumerate() {
        if d.disk.starts_with('.') {
            return Err(format!("disk name {:?} may not start with a dot", d.disk));
        }
        if hg.disks[..i].iter().any(|o| o.disk == d.disk) {
            return Err(format!("group {} names disk {} twice", hg.group, d.disk));
        }
        if d.size_bytes == 0 || d.size_bytes % rewind_formats::SECTOR != 0 {
            return Err(format!(
                "disk {}/{} size {} is not a positive multiple of 512",
                hg.group, d.disk, d.size_bytes
            ));
        }
        if d.size_bytes > q.max_disk_size {
            return Err(format!(
                "disk {}/{} is declared {} bytes; at most {} (--max-disk-size)",
                hg.group, d.disk, d.size_bytes, q.max_disk_size
            ));
        }
    }
    Ok(())
}

/// Finish what a crash cut short in [`Store::install_group`] (or an offline adopt): a complete
/// built group (its manifest, written last, exists) in `DATA_DIR/adopting/G` while `groups/G`
/// does not is moved into place; the directories of replaced groups are removed.
fn finish_installs(dir: &Path) -> Result<()> {
    let groups_dir = dir.join("groups");
    if let Ok(entries) = fs::read_dir(dir.join("adopting")) {
        for e in entries.flatten() {
            let built = e.path();
            let dest = groups_dir.join(e.file_name());
            if built.join(manifest::MANIFEST_FILE).exists() && !dest.exists() {
                tracing::warn!(group = %dest.display(), "finishing the install of an adopted group a crash cut short");
                fs::rename(&built, &dest).map_err(StoreError::io("move into place", &dest))?;
                crate::fsutil::sync_dir(&groups_dir)?;
            }
        }
    }
    for e in fs::read_dir(dir)
        .map_err(StoreError::io("read directory", dir))?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("replaced-") || n.starts_with("deleted-") {
            let p = e.path();
            tracing::info!(dir = %p.display(), "removing a replaced group");
            fs::remove_dir_all(&p).map_err(StoreError::io("remove", &p))?;
        }
    }
    Ok(())
}

/// Take the data directory's lock for as long as the returned guard lives (one daemon per store).
pub fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>> {
    let path = dir.join("LOCK");
    let f = File::create(&path).map_err(StoreError::io("create lock file", &path))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| StoreError::Locked(dir.to_path_buf()))
}

fn load_groups(groups_dir: &Path, mode: LoadMode) -> Result<BTreeMap<String, Arc<Group>>> {
    let mut out = BTreeMap::new();
    let mut entries: Vec<_> = fs::read_dir(groups_dir)
        .map_err(StoreError::io("read directory", groups_dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for dir in entries {
        if !dir.join(manifest::MANIFEST_FILE).exists() {
            tracing::warn!(dir = %dir.display(), "group directory without a manifest (a creation interrupted by a crash); ignoring it");
            continue;
        }
        let g = Group::load(dir, mode)?;
        tracing::info!(group = %g.name, durable = g.durable().0, "loaded group");
        out.insert(g.name.clone(), g);
    }
    Ok(out)
}

fn spawn_ticker(tx: mpsc::WeakSender<WriterMsg>) {
    std::thread::Builder::new()
        .name("rewind-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let Some(tx) = tx.upgrade() else { return };
            if tx.blocking_send(WriterMsg::Tick).is_err() {
                return;
            }
        })
        .expect("spawn ticker thread");
}

fn spawn_merger(store: Weak<Store>, interval: Duration) {
    std::thread::Builder::new()
        .name("rewind-merger".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(store) = store.upgrade() else { return };
            if store.health.failed().is_some() {
                continue;
            }
            for g in store.groups() {
                if let Err(e) = merger::merge_expired(&g, now_ms()) {
                    tracing::error!(group = %g.name, error = %e, "merge failed; will retry");
                }
            }
        })
        .expect("spawn merger thread");
}
