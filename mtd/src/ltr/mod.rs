//! Long-term retention: kept points that outlive the journal window, as image layers in object
//! storage (docs/LTR.md).
//!
//! - [`objects`]: the object store (`file://` directory or S3), with a blocking face.
//! - [`chunk`]: content-addressed, compressed chunks; [`cache`]: the local chunk cache.
//! - [`catalog`]: which points are archived; [`image`]: reading one as a disk.
//! - [`schedule`]: which points the policy's tiers keep; [`archiver`]: storing one;
//!   [`gc`]: deleting what no tier keeps; [`service`]: the daemon's periodic pass.
//! - [`lock`]: S3 Object Lock of what archives write; `s3`: the signed S3 requests it needs.
//!
//! Object layout: `chunks/<blake3 hex>` (zstd), `points/<group>/<disk>/<seq:020>.json`.

pub mod archiver;
pub mod cache;
pub mod catalog;
pub mod chunk;
mod error;
pub mod gc;
pub mod image;
pub mod lock;
pub mod objects;
pub mod s3;
pub mod schedule;
pub mod service;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rewind_formats::ltr::LtrManifest;

pub use error::{LtrError, Result};

use self::cache::Cache;
use self::catalog::{Catalog, KeptPoint};
use self::chunk::Hash;
use self::lock::{LockEnds, LockMode};
use self::objects::Objects;

/// How the daemon's long-term retention is set up (`rewind-mtd serve --ltr-*`).
#[derive(Clone, Debug)]
pub struct LtrOptions {
    /// `file:///DIR` or `s3://BUCKET?...` (see [`Objects::open`]).
    pub url: String,
    pub cache_dir: PathBuf,
    pub cache_bytes: u64,
    /// Uploads in flight at once.
    pub parallel: usize,
    /// Unreferenced chunks younger than this are kept (an archive may be about to name them).
    pub gc_grace: Duration,
    /// How often the schedule is looked at, and how often garbage is collected.
    pub interval: Duration,
    pub gc_interval: Duration,
    /// TESTS ONLY: an "hour" of the retention tiers lasts this long (see [`schedule`]).
    pub test_hour: Option<Duration>,
    /// Lock every object archives write (S3 Object Lock), in this mode (see [`lock`]).
    pub object_lock: Option<LockMode>,
}

pub struct Ltr {
    pub objects: Objects,
    cache: Cache,
    catalog: Mutex<Catalog>,
    /// Chunks known to be stored (from a listing at start, then every upload): not uploaded again.
    known: Mutex<HashSet<Hash>>,
    /// Archiving and garbage collection never overlap: a collection must not delete a chunk an
    /// archive has just found in `known` and is about to name in its manifest.
    exclusive: Mutex<()>,
    /// Object Lock on: until when each chunk is known to be locked (see [`lock`]).
    lock_ends: Mutex<LockEnds>,
    pub opts: LtrOptions,
}

impl Ltr {
    /// Open the store: read every manifest into the catalog and list the stored chunks.
    pub fn open(opts: LtrOptions) -> Result<Arc<Ltr>> {
        let mut objects = Objects::open(&opts.url)?;
        if opts.object_lock.is_some() {
            objects.require_object_lock()?;
        }
        let cache = Cache::open(&opts.cache_dir, opts.cache_bytes)?;
        let ltr = Ltr {
            objects,
            cache,
            catalog: Mutex::default(),
            known: Mutex::default(),
            exclusive: Mutex::new(()),
            lock_ends: Mutex::default(),
            opts,
        };
        ltr.reload()?;
        Ok(Arc::new(ltr))
    }

    /// Read the catalog and the known chunks from the store again.
    pub fn reload(&self) -> Result<()> {
        let mut catalog = Catalog::default();
        let mut lock_ends = LockEnds::default();
        for o in self.objects.list("points")? {
            if !o.key.ends_with(".json") {
                continue;
            }
            match self.manifest_at(&o.key) {
                Ok(m) => {
                    if self.opts.object_lock.is_some() {
                        // Each chunk was locked at least until the expiry of every point
                        // naming it when that point was archived or extended.
                        for h in m.chunks.iter().filter_map(|c| chunk::from_hex(c)) {
                            lock_ends.raise(h, m.keep_until_ms);
                        }
                    }
                    catalog.insert(KeptPoint::of(&m))
                }
                Err(e) => {
                    tracing::error!(key = %o.key, error = %e, "a long-term manifest is unreadable: its point is not offered")
                }
            }
        }
        let known: HashSet<Hash> = self
            .objects
            .list("chunks")?
            .iter()
            .filter_map(|o| o.key.strip_prefix("chunks/").and_then(chunk::from_hex))
            .collect();
        tracing::info!(url = %self.objects.url(), points = catalog.all().len(), chunks = known.len(), "long-term store opened");
        *self.catalog.lock().expect("catalog lock") = catalog;
        *self.known.lock().expect("known lock") = known;
        *self.lock_ends.lock().expect("lock ends lock") = lock_ends;
        Ok(())
    }

    /// The manifest stored under `key`, validated.
    pub fn manifest_at(&self, key: &str) -> Result<LtrManifest> {
        let bytes = self.objects.get(key)?.ok_or_else(|| LtrError::Corrupt {
            key: key.to_string(),
            why: "the manifest is missing".into(),
        })?;
        LtrManifest::from_json(&bytes).map_err(|e| LtrError::Corrupt {
            key: key.to_string(),
            why: e.to_string(),
        })
    }

    pub fn manifest(&self, group: &str, disk: &str, seq: u64) -> Result<LtrManifest> {
        self.manifest_at(&LtrManifest::key(group, disk, seq))
    }

    /// Every kept point of a group, oldest first per disk.
    pub fn points_of(&self, group: &str) -> Vec<KeptPoint> {
        self.catalog.lock().expect("catalog lock").of_group(group)
    }

    pub fn all_points(&self) -> Vec<KeptPoint> {
        self.catalog.lock().expect("catalog lock").all()
    }

    /// The kept point a spec names (see [`Catalog::resolve`]).
    pub fn resolve(
        &self,
        group: &str,
        disk: &str,
        spec: &crate::store::points::PointSpec,
    ) -> Option<KeptPoint> {
        self.catalog
            .lock()
            .expect("catalog lock")
            .resolve(group, disk, spec)
            .cloned()
    }

    /// A chunk's plain bytes: from the cache, else fetched, checked and cached.
    pub fn chunk(&self, h: &Hash, chunk_size: usize) -> Result<Vec<u8>> {
        if let Some(b) = self.cache.get(h) {
            return Ok(b);
        }
        let key = chunk::key(h);
        let stored = self.objects.get(&key)?.ok_or_else(|| LtrError::Corrupt {
            key: key.clone(),
            why: "the chunk is missing from the store".into(),
        })?;
        let plain = chunk::decode(h, &stored, chunk_size)?;
        self.cache.put(h, &plain);
        Ok(plain)
    }
}
