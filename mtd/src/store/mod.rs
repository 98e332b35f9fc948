//! The master target's store: every replicated group with its journal, base images and points.
//!
//! The store knows nothing of the agent protocol: it takes typed requests (an `admit::Admission`
//! to open groups for feeding, `writer::AppendReq` chunks) and returns typed errors; the
//! server (`crate::server`) turns those into frames and wire codes. Only the store takes a
//! group's state lock: others ask the group (`reads.rs`).
//!
//! On disk:
//! ```text
//! DATA_DIR/LOCK                                  flock'd by the serving daemon
//! DATA_DIR/space-reserve                         preallocated, no data: the merger's room on a full disk
//! DATA_DIR/groups/GROUP/group.json               manifest (disks, generation, retention, horizon)
//! DATA_DIR/groups/GROUP/base/DISK.img            base image: the disk as of the horizon (sparse)
//! DATA_DIR/groups/GROUP/journal/seg-NNNNNNNN.rwj journal segments, every record since the horizon
//! ```

pub(crate) mod admit;
pub mod compression;
pub mod engine;
pub(crate) mod epoch;
mod error;
pub(crate) mod facts;
pub(crate) mod feeder;
pub(crate) mod fence;
pub(crate) mod files;
pub(crate) mod frames;
pub mod group;
pub(crate) mod health;
pub(crate) mod index;
pub(crate) mod kept;
pub(crate) mod manifest;
pub mod merger;
pub(crate) mod pins;
pub mod points;
pub mod policy;
pub mod quota;
pub(crate) mod reads;
mod replay;
pub(crate) mod reserve;
pub(crate) mod segment_file;
pub(crate) mod shortage;
pub mod writer;
#[cfg(test)]
mod writer_faults;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

pub use error::{Result, StoreError};

use self::engine::EngineKind;
use self::group::Group;
use self::health::{Component, Health};
use self::reserve::SpaceReserve;
use self::segment_file::LoadMode;
use self::shortage::Shortage;
use self::writer::{AppendReq, Writer, WriterConfig, WriterMsg};
use rewind_linux::clock::now_ms;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub engine: EngineKind,
    pub writer: WriterConfig,
    /// Retention window given to groups created by a first HELLO.
    pub default_retention: Duration,
    pub merge_interval: Duration,
    /// Bytes kept allocated for the merger to spend on a full disk (`reserve.rs`); 0 (the
    /// default here, for tests and tools) disables it. The daemon keeps what one merge step
    /// may need ([`StoreOptions::reserve_for`]).
    pub space_reserve: u64,
    /// How sessions store data records in the journal (`--journal-compression`).
    pub journal_compression: compression::JournalCompression,
}

impl StoreOptions {
    /// The reserve one merge step may need with segments of `segment_size`: a segment holds
    /// at most `segment_size` plus the chunk that crossed it (a chunk is one agent batch:
    /// 4 MiB by default, at most a frame, 64 MiB), every byte of which may land in a hole of
    /// the base, plus `reserve::SLACK` (1 MiB) of metadata.
    pub fn reserve_for(segment_size: u64) -> u64 {
        segment_size + segment_size.min(rewind_formats::MAX_FRAME_PAYLOAD as u64) + reserve::SLACK
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            engine: EngineKind::Uring,
            writer: WriterConfig::default(),
            default_retention: Duration::from_secs(24 * 3600),
            merge_interval: Duration::from_secs(1),
            space_reserve: 0,
            journal_compression: compression::JournalCompression::default(),
        }
    }
}

/// How long a group delete waits for the writer to seal the group's segment.
const DELETE_WAIT: Duration = Duration::from_secs(30);

/// Why a group was not deleted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeleteError {
    /// Something uses the group (`by` says what): nothing was changed.
    #[error("group {group} is in use: {by}")]
    InUse { group: String, by: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Store {
    pub dir: PathBuf,
    mode: LoadMode,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    pub(crate) health: Arc<Health>,
    /// Space the merger may spend when the disk is full.
    pub(crate) reserve: Arc<SpaceReserve>,
    writer_tx: Option<mpsc::Sender<WriterMsg>>,
    opts: StoreOptions,
    _lock: Option<nix::fcntl::Flock<File>>,
    /// What changed, for `GET /v1/events` (the store only carries it: sessions, jobs and the
    /// control API emit).
    pub events: Arc<crate::events::Events>,
    /// Long-term retention, when the daemon set it up (`Store::set_ltr`).
    ltr: std::sync::OnceLock<Arc<crate::ltr::Ltr>>,
}

impl Store {
    /// Open (or create) a data directory for serving: takes its lock, repairs torn segment tails,
    /// finishes interrupted merges, and starts the writer and merger threads.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Arc<Store>> {
        let groups_dir = dir.join("groups");
        // Durable: a power cut must not drop `groups` with every group in it.
        files::create_dir_durable(&groups_dir)?;
        crate::access::make_private_dir(dir).map_err(StoreError::io("chmod 0700", dir))?;
        let lock = lock_dir(dir)?;
        finish_installs(dir)?;
        let groups = load_groups(&groups_dir, LoadMode::Repair)?;
        let reserve = Arc::new(SpaceReserve::open(dir, opts.space_reserve));
        for g in groups.values() {
            finish_merge_at_start(g, &reserve)?;
        }
        let engine = engine::make_engine(opts.engine)
            .map_err(StoreError::io("set up the io engine for", dir))?;
        let health = Arc::new(Health::default());
        let (tx, rx) = mpsc::channel(64);
        let writer = Writer::new(engine, opts.writer.clone(), health.clone(), reserve.clone());
        std::thread::Builder::new()
            .name("rewind-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::io("spawn writer thread for", dir))?;
        let store = Arc::new(Store {
            dir: dir.to_path_buf(),
            mode: LoadMode::Repair,
            groups: RwLock::new(groups),
            health,
            reserve,
            writer_tx: Some(tx.clone()),
            opts,
            _lock: Some(lock),
            events: Arc::default(),
            ltr: std::sync::OnceLock::new(),
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
            reserve: Arc::new(SpaceReserve::none(dir)),
            writer_tx: None,
            opts: StoreOptions::default(),
            _lock: None,
            events: Arc::default(),
            ltr: std::sync::OnceLock::new(),
        })
    }

    /// Long-term retention, if set up: views of points older than the window read from it.
    pub fn ltr(&self) -> Option<Arc<crate::ltr::Ltr>> {
        self.ltr.get().cloned()
    }

    /// Set up long-term retention (once, at daemon start).
    pub fn set_ltr(&self, ltr: Arc<crate::ltr::Ltr>) {
        let _ = self.ltr.set(ltr);
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

    /// How sessions store data records in the journal.
    pub(crate) fn journal_compression(&self) -> compression::JournalCompression {
        self.opts.journal_compression
    }

    /// The retention given to new groups.
    pub(crate) fn default_retention_ms(&self) -> u64 {
        self.opts.default_retention.as_millis() as u64
    }

    /// Move a group built in `built` (adopt) into `DATA_DIR/groups` and load it. With `replace`,
    /// a group of the same name (idle: no agent feeds it) is replaced, and its directory deleted
    /// once the new one is in place.
    pub(crate) fn install_group(
        &self,
        name: &str,
        built: &Path,
        replace: bool,
    ) -> Result<Arc<Group>> {
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
            if let Some((agent, peer)) = old.fed_by() {
                return Err(StoreError::Invalid {
                    what: "group",
                    why: format!("group {name} is being fed by agent {agent} ({peer})"),
                });
            }
        }
        let trash = self.dir.join(format!("replaced-{name}-{}", now_ms()));
        if dest.exists() {
            fs::rename(&dest, &trash).map_err(StoreError::io("move aside", &dest))?;
        }
        fs::rename(built, &dest).map_err(StoreError::io("move into place", &dest))?;
        files::sync_dir(&groups_dir)?;
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
    pub(crate) fn delete_group(&self, name: &str) -> Result<(), DeleteError> {
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
        if let Some((agent, peer)) = g.fed_by() {
            return Err(in_use(format!(
                "agent {agent} is connected and feeding it ({peer}); stop the agent first"
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
            // A writer paused by a shortage answers only once it resumes: refuse rather than
            // hang the caller. (The queued Forget is still done later: sealing a live group's
            // segment is harmless, its next chunk opens a new one.)
            match done_rx.recv_timeout(DELETE_WAIT) {
                Ok(r) => r.map_err(restore)?,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    restore(StoreError::Failed(String::new()));
                    let why = self.health.pauses().into_iter().next().map_or_else(
                        || "the journal writer did not answer".to_string(),
                        |p| {
                            format!(
                                "the journal writer is paused ({}: {} {})",
                                p.detail, p.what, p.path
                            )
                        },
                    );
                    return Err(in_use(format!("{why}; retry once it resumes")));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(restore(StoreError::Failed("journal writer stopped".into())).into())
                }
            }
        }
        let groups_dir = self.dir.join("groups");
        let trash = self.dir.join(format!("deleted-{name}-{}", now_ms()));
        fs::rename(&g.dir, &trash)
            .map_err(StoreError::io("move aside", &g.dir))
            .map_err(restore)?;
        files::sync_dir(&groups_dir)?;
        files::sync_dir(&self.dir)?;
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
                files::sync_dir(&groups_dir)?;
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
pub(crate) fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>> {
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
            // Take back what a full disk left of the reserve before anyone else takes it.
            store.reserve.restore();
            for g in store.groups() {
                merge_pass(&store, &g);
            }
        })
        .expect("spawn merger thread");
}

/// One merger pass over a group. A shortage pauses the merger (retried next pass); on a full
/// disk the space reserve is spent on one merge step, which frees a segment, and taken back.
/// Other errors are logged and retried too: a merge step is replayed whole (records rewritten
/// before the base's fdatasync), so a retried sync vouches only for bytes written after it.
fn merge_pass(store: &Store, g: &Arc<Group>) {
    let health = &store.health;
    let err = match merger::merge_expired(g, now_ms()) {
        Ok(_) => return health.recovered(Component::Merger),
        Err(e) => e,
    };
    match Shortage::of(&err) {
        Some(Shortage::Space) => {
            health.pause(Component::Merger, Shortage::Space, &err);
            if !store.reserve.release() {
                return;
            }
            let r = merger::merge_expired_upto(g, now_ms(), 1);
            store.reserve.restore();
            match r {
                Ok(_) => health.recovered(Component::Merger),
                Err(e) => {
                    tracing::error!(group = %g.name, error = %e, "merge on the space reserve failed; will retry")
                }
            }
        }
        Some(s) => health.pause(Component::Merger, s, &err),
        None => {
            tracing::error!(group = %g.name, error = %err, "merge failed; will retry")
        }
    }
}

/// Finish a merge a crash cut short, at start. On a full disk the reserve is spent on it; if
/// that is not enough either, the store starts anyway and the merger finishes it later (the
/// segments stay readable until then: they are loaded and indexed like any other).
fn finish_merge_at_start(g: &Arc<Group>, reserve: &SpaceReserve) -> Result<()> {
    let Err(e) = merger::finish_interrupted(g) else {
        return Ok(());
    };
    if Shortage::of(&e).is_none() {
        return Err(e);
    }
    let retried = if reserve.release() {
        let r = merger::finish_interrupted(g);
        reserve.restore();
        r
    } else {
        Err(e)
    };
    if let Err(e) = retried {
        if Shortage::of(&e).is_none() {
            return Err(e);
        }
        tracing::warn!(group = %g.name, error = %e, "cannot finish an interrupted merge now; the merger retries once space or descriptors come back");
    }
    Ok(())
}
