//! Writable overlays: a sparse data file and a block bitmap over a frozen point of one disk.
//!
//! Test failover and mounting a crash-consistent point (whose filesystem journal must replay) both
//! need to write to a point without changing it. Writes land in `data.img` at their own offsets;
//! bit i of `bitmap` says block i is read from the overlay rather than from the point. An overlay
//! pins its point (the merger never folds history under it) and survives a daemon restart; it is
//! deleted only on request.
//!
//! Layout under `DATA_DIR/overlays/NAME/`: `overlay.json` (what it is over), `data.img` (sparse,
//! the disk's size), `bitmap` (one bit per 4 KiB block). Durability follows block-device rules: a
//! write is durable after a flush (or with FUA); a flush makes the data durable before the bitmap
//! bits that point at it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::store::files;
use crate::store::points::PointSpec;
use crate::store::{Result, Store, StoreError};
use crate::views::view::{push_extent, sparse_runs, Extent, View};
use rewind_linux::clock::now_ms;

mod flush;

/// The overlay's unit of copy-on-write.
pub const OVERLAY_BLOCK: u64 = 4096;
/// Bitmap bytes written back per dirty page at a flush.
const BITMAP_PAGE: usize = 4096;
/// Write locks are striped by block so that writes to different blocks run in parallel while a
/// partial-block read-modify-write never races another write to the same block.
const STRIPES: usize = 64;

/// What an overlay is over; `overlay.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OverlayMeta {
    pub name: String,
    pub group: String,
    pub disk: String,
    /// The frozen point: every seq of the group is one.
    pub seq: u64,
    /// The point spec the user gave, for display.
    pub point: String,
    pub size_bytes: u64,
    pub created_ms: u64,
    /// Made for one `rewind mount`/`attach --writable` and dropped with it.
    #[serde(default)]
    pub throwaway: bool,
}

pub struct Overlay {
    pub meta: OverlayMeta,
    dir: PathBuf,
    view: View,
    data: File,
    bitmap_file: File,
    bits: Vec<AtomicU64>,
    /// Bitmap pages changed since the last flush.
    dirty_pages: Mutex<BTreeSet<usize>>,
    /// Held for a whole flush (see [`Overlay::flush`]).
    flushing: Mutex<()>,
    /// An fsync of `data.img` failed once: every later flush fails too.
    data_sync_failed: std::sync::atomic::AtomicBool,
    stripes: Vec<Mutex<()>>,
    /// NBD clients get it read-only: a live disk under reverse replication is written only
    /// through its loop device, by the agent that replicates every write.
    pub nbd_read_only: std::sync::atomic::AtomicBool,
}

impl Overlay {
    pub fn size_bytes(&self) -> u64 {
        self.meta.size_bytes
    }

    /// As listed by the control API; `self` is one of the overlay table's own handles.
    pub fn info(self: &Arc<Self>) -> OverlayInfo {
        OverlayInfo {
            meta: self.meta.clone(),
            used_bytes: self.used_bytes(),
            users: Arc::strong_count(self) - 1,
        }
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    /// Bytes held in the overlay (blocks written since it was made).
    pub fn used_bytes(&self) -> u64 {
        self.bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as u64)
            .sum::<u64>()
            * OVERLAY_BLOCK
    }

    fn has(&self, block: u64) -> bool {
        let w = self.bits[(block / 64) as usize].load(Ordering::Acquire);
        w & (1 << (block % 64)) != 0
    }

    fn set(&self, first: u64, last: u64) {
        let mut dirty = self.dirty_pages.lock().expect("dirty lock");
        for b in first..=last {
            self.bits[(b / 64) as usize].fetch_or(1 << (b % 64), Ordering::Release);
            dirty.insert((b / 8) as usize / BITMAP_PAGE);
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.meta.size_bytes => Ok(()),
            _ => Err(StoreError::Invalid {
                what: "request",
                why: format!(
                    "overlay {} offset {offset} length {len} is past the end of the disk ({} bytes)",
                    self.meta.name, self.meta.size_bytes
                ),
            }),
        }
    }

    fn io_error(&self, op: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> StoreError {
        StoreError::io(
            op,
            format!("{} at offset {offset}", self.dir.join("data.img").display()),
        )
    }

    /// `[offset, end)` cut into runs of blocks that are all in the overlay or all not:
    /// `(start, run_end, in_overlay)`.
    fn runs(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
        let mut pos = offset;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let inside = self.has(pos / OVERLAY_BLOCK);
            let mut run_end = (pos / OVERLAY_BLOCK + 1) * OVERLAY_BLOCK;
            while run_end < end && self.has(run_end / OVERLAY_BLOCK) == inside {
                run_end += OVERLAY_BLOCK;
            }
            let run = (pos, run_end.min(end), inside);
            pos = run.1;
            Some(run)
        })
    }

    /// Read `buf.len()` bytes at `offset`: overlay blocks from `data.img`, the rest from the point.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        for (pos, run_end, inside) in self.runs(offset, offset + buf.len() as u64) {
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            if inside {
                self.data
                    .read_exact_at(out, pos)
                    .map_err(self.io_error("read", pos))?;
            } else {
                self.view.read_at(out, pos)?;
            }
        }
        Ok(())
    }

    fn lock_blocks(&self, first: u64, last: u64) -> Vec<MutexGuard<'_, ()>> {
        let mut ids: Vec<usize> = (first..=last.min(first + STRIPES as u64))
            .map(|b| (b % STRIPES as u64) as usize)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|i| self.stripes[i].lock().expect("stripe lock"))
            .collect()
    }

    /// Write `buf` at `offset`. A partial first or last block is completed from what reads there now.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let first = offset / OVERLAY_BLOCK;
        let last = (end - 1) / OVERLAY_BLOCK;
        let _locks = self.lock_blocks(first, last);
        let aligned_start = first * OVERLAY_BLOCK;
        let aligned_end = (last + 1) * OVERLAY_BLOCK;
        if aligned_start == offset && aligned_end == end {
            self.data
                .write_all_at(buf, offset)
                .map_err(self.io_error("write", offset))?;
        } else {
            let mut whole = vec![0u8; (aligned_end - aligned_start) as usize];
            // Only the edge blocks need their old bytes.
            let head = OVERLAY_BLOCK as usize;
            self.read_at(&mut whole[..head], aligned_start)?;
            if last != first {
                let tail_at = whole.len() - head;
                self.read_at(&mut whole[tail_at..], aligned_end - OVERLAY_BLOCK)?;
            }
            let lo = (offset - aligned_start) as usize;
            whole[lo..lo + buf.len()].copy_from_slice(buf);
            self.data
                .write_all_at(&whole, aligned_start)
                .map_err(self.io_error("write", aligned_start))?;
        }
        self.set(first, last);
        Ok(())
    }

    /// Make `[offset, offset + len)` read as zeroes. Whole blocks become holes in `data.img`
    /// (no space used); partial edge blocks are written.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        let inner_start = offset.div_ceil(OVERLAY_BLOCK) * OVERLAY_BLOCK;
        let inner_end = end / OVERLAY_BLOCK * OVERLAY_BLOCK;
        if inner_start >= inner_end {
            return self.write_at(&vec![0u8; len as usize], offset);
        }
        if offset < inner_start {
            self.write_at(&vec![0u8; (inner_start - offset) as usize], offset)?;
        }
        if inner_end < end {
            self.write_at(&vec![0u8; (end - inner_end) as usize], inner_end)?;
        }
        let first = inner_start / OVERLAY_BLOCK;
        let last = inner_end / OVERLAY_BLOCK - 1;
        let _locks = self.lock_blocks(first, last);
        nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&self.data),
            nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            inner_start as i64,
            (inner_end - inner_start) as i64,
        )
        .map_err(|e| self.io_error("punch hole", inner_start)(e.into()))?;
        self.set(first, last);
        Ok(())
    }

    /// Allocation of `[offset, offset + len)`: overlay blocks by the holes of `data.img`, the rest
    /// from the point.
    pub fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.meta.size_bytes);
        let mut out = Vec::new();
        for (pos, run_end, inside) in self.runs(offset, end) {
            if inside {
                for (o, l, a) in sparse_runs(&self.data, pos, run_end - pos)
                    .map_err(self.io_error("seek", pos))?
                {
                    push_extent(&mut out, o, l, a);
                }
            } else {
                for e in self.view.extents(pos, run_end - pos)? {
                    push_extent(&mut out, e.offset, e.len, e.allocation);
                }
            }
        }
        Ok(out)
    }
}

fn bitmap_len(size_bytes: u64) -> usize {
    size_bytes.div_ceil(OVERLAY_BLOCK).div_ceil(8) as usize
}

/// Longest overlay name: its directory is built as `.NAME.tmp`, which must fit a file name (255
/// bytes), and every failover overlay name built from a valid group and disk name fits it (see
/// the test `failover_overlay_names_fit`).
pub const MAX_OVERLAY_NAME_LEN: usize = 240;

/// Overlay names go into paths and export names: keep them to a safe alphabet.
pub fn check_overlay_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_OVERLAY_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "overlay name",
            why: format!(
                "{name:?}: use letters, digits, '-', '_' and '.' (not first), up to {MAX_OVERLAY_NAME_LEN}"
            ),
        })
    }
}

/// All overlays of a data directory.
pub struct Overlays {
    root: PathBuf,
    store: Arc<Store>,
    map: Mutex<std::collections::BTreeMap<String, Arc<Overlay>>>,
}

/// An overlay as listed by the control API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OverlayInfo {
    #[serde(flatten)]
    pub meta: OverlayMeta,
    pub used_bytes: u64,
    /// Open exports, files and loop devices using it.
    pub users: usize,
}

impl Overlays {
    /// Open every overlay under `DATA_DIR/overlays`. Call right after `Store::open`, before the
    /// merger's first pass, so their points are pinned again. Throwaway overlays (their mounts
    /// died with the previous daemon) are deleted.
    pub fn load(store: Arc<Store>) -> Result<Overlays> {
        let root = store.dir.join("overlays");
        files::create_dir_durable(&root)?;
        let overlays = Overlays {
            root: root.clone(),
            store,
            map: Mutex::new(Default::default()),
        };
        for e in fs::read_dir(&root).map_err(StoreError::io("read directory", &root))? {
            let e = e.map_err(StoreError::io("read directory", &root))?;
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A create cut short by a crash or a power cut before its rename was durable
                // (never acknowledged, so nothing depends on it; opened, it would show an
                // overlay that was never made), or a delete cut short after its rename.
                tracing::info!(dir = %dir.display(), "removing an overlay whose create or delete did not finish");
                fs::remove_dir_all(&dir).map_err(StoreError::io("remove", &dir))?;
                continue;
            }
            let meta = match read_meta(&dir) {
                Ok(m) if m.name == name => m,
                Ok(m) => {
                    tracing::error!(dir = %dir.display(), named = %m.name, "overlay.json names another overlay; left as it is");
                    continue;
                }
                Err(err) => {
                    tracing::error!(dir = %dir.display(), error = %err, "cannot read overlay; left as it is");
                    continue;
                }
            };
            if meta.throwaway {
                tracing::info!(overlay = %meta.name, "removing a throwaway overlay left by a previous run");
                remove_atomically(&root, &name, &dir)?;
                continue;
            }
            match overlays.open(dir.clone(), meta.clone()) {
                Ok(o) => {
                    overlays
                        .map
                        .lock()
                        .expect("overlays lock")
                        .insert(meta.name.clone(), Arc::new(o));
                }
                Err(err) => {
                    tracing::error!(overlay = %meta.name, error = %err, "cannot open overlay; left as it is")
                }
            }
        }
        Ok(overlays)
    }

    fn open(&self, dir: PathBuf, meta: OverlayMeta) -> Result<Overlay> {
        let spec = PointSpec::parse(&format!("seq:{}", meta.seq))?;
        let view = View::open(&self.store, &meta.group, &meta.disk, &spec)?;
        if view.size_bytes() != meta.size_bytes {
            return Err(StoreError::Invalid {
                what: "overlay",
                why: format!(
                    "{} is {} bytes but disk {}/{} is {} bytes",
                    meta.name,
                    meta.size_bytes,
                    meta.group,
                    meta.disk,
                    view.size_bytes()
                ),
            });
        }
        let rw = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .map_err(StoreError::io("open", p))
        };
        let data = rw(&dir.join("data.img"))?;
        let bitmap_path = dir.join("bitmap");
        let bitmap_file = rw(&bitmap_path)?;
        let mut bytes = vec![0u8; bitmap_len(meta.size_bytes)];
        bitmap_file
            .read_exact_at(&mut bytes, 0)
            .map_err(StoreError::io("read", &bitmap_path))?;
        let bits = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                AtomicU64::new(u64::from_le_bytes(w))
            })
            .collect();
        Ok(Overlay {
            meta,
            dir,
            view,
            data,
            bitmap_file,
            bits,
            dirty_pages: Mutex::new(BTreeSet::new()),
            flushing: Mutex::new(()),
            data_sync_failed: std::sync::atomic::AtomicBool::new(false),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            nbd_read_only: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Make an overlay over `group/disk` at `point`. The point is resolved to a seq now and frozen.
    pub fn create(
        &self,
        name: &str,
        group: &str,
        disk: &str,
        point: &str,
        throwaway: bool,
    ) -> Result<Arc<Overlay>> {
        check_overlay_name(name)?;
        let spec = PointSpec::parse(point)?;
        let view = View::open(&self.store, group, disk, &spec)?;
        let mut map = self.map.lock().expect("overlays lock");
        let dir = self.root.join(name);
        if map.contains_key(name) || dir.exists() {
            return Err(StoreError::Invalid {
                what: "overlay",
                why: format!("an overlay named {name} already exists"),
            });
        }
        let meta = OverlayMeta {
            name: name.into(),
            group: group.into(),
            disk: disk.into(),
            seq: view.seq().0,
            point: point.into(),
            size_bytes: view.size_bytes(),
            created_ms: now_ms(),
            throwaway,
        };
        drop(view);
        // Built under a temporary name and renamed: a crash leaves no half-made overlay.
        let tmp = self.root.join(format!(".{name}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        if let Err(e) =
            build_overlay_dir(&tmp, &dir, &meta).and_then(|()| files::sync_dir(&self.root))
        {
            // A full disk or no descriptors left (ENOSPC, EMFILE) fails this create and nothing
            // else: what was built is given back at once, not left for the next start.
            if !dir.exists() {
                let _ = fs::remove_dir_all(&tmp);
            }
            return Err(e);
        }
        let o = match self.open(dir.clone(), meta) {
            Ok(o) => Arc::new(o),
            Err(e) => {
                // (EMFILE opening its files, say): not left on disk unlisted, where neither a
                // new create nor a delete could reach it before the next start.
                let _ = remove_atomically(&self.root, name, &dir);
                return Err(e);
            }
        };
        map.insert(name.into(), o.clone());
        tracing::info!(
            overlay = name,
            group,
            disk,
            seq = o.meta.seq,
            "created overlay"
        );
        Ok(o)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Overlay>> {
        self.map
            .lock()
            .expect("overlays lock")
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownOverlay(name.into()))
    }

    pub fn list(&self) -> Vec<OverlayInfo> {
        self.map
            .lock()
            .expect("overlays lock")
            .values()
            .map(Overlay::info)
            .collect()
    }

    /// Flush every overlay (daemon shutdown: writes since a client's last flush keep their data).
    pub fn flush_all(&self) {
        let all: Vec<Arc<Overlay>> = self
            .map
            .lock()
            .expect("overlays lock")
            .values()
            .cloned()
            .collect();
        for o in all {
            if let Err(e) = o.flush() {
                tracing::error!(overlay = %o.meta.name, error = %e, "cannot flush overlay");
            }
        }
    }

    /// Delete an overlay and its data. Refused while anything (an NBD client, an open FUSE file,
    /// a loop device) still uses it.
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut map = self.map.lock().expect("overlays lock");
        let o = map
            .get(name)
            .ok_or_else(|| StoreError::UnknownOverlay(name.into()))?;
        let users = Arc::strong_count(o) - 1;
        if users > 0 {
            return Err(StoreError::OverlayInUse {
                name: name.into(),
                users,
            });
        }
        let o = map.remove(name).expect("present");
        let dir = o.dir.clone();
        drop(o);
        remove_atomically(&self.root, name, &dir)?;
        tracing::info!(overlay = name, "deleted overlay");
        Ok(())
    }
}

/// Build an overlay's files in `tmp` (sparse data, zeroed bitmap, `overlay.json`, each durable)
/// and rename it to `dir`.
fn build_overlay_dir(tmp: &Path, dir: &Path, meta: &OverlayMeta) -> Result<()> {
    fs::create_dir(tmp).map_err(StoreError::io("create directory", tmp))?;
    let data = tmp.join("data.img");
    File::create(&data)
        .and_then(|f| f.set_len(meta.size_bytes).map(|_| f))
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("create", &data))?;
    let bitmap = tmp.join("bitmap");
    fs::write(&bitmap, vec![0u8; bitmap_len(meta.size_bytes)])
        .and_then(|_| File::open(&bitmap)?.sync_all())
        .map_err(StoreError::io("create", &bitmap))?;
    let json = serde_json::to_vec_pretty(meta).expect("overlay meta serializes");
    files::write_atomic(&tmp.join("overlay.json"), &json)?;
    fs::rename(tmp, dir).map_err(StoreError::io("rename into place", dir))
}

/// Remove overlay `name`'s directory `dir` in one durable step: renamed to its temporary name
/// (which [`Overlays::load`] removes) first, so a crash or power cut part way through leaves
/// the whole overlay or nothing, never one with its data gone and its metadata left.
fn remove_atomically(root: &Path, name: &str, dir: &Path) -> Result<()> {
    let doomed = root.join(format!(".{name}.tmp"));
    let _ = fs::remove_dir_all(&doomed);
    fs::rename(dir, &doomed).map_err(StoreError::io("rename", dir))?;
    files::sync_dir(root)?;
    fs::remove_dir_all(&doomed).map_err(StoreError::io("remove", &doomed))
}

fn read_meta(dir: &Path) -> Result<OverlayMeta> {
    let p = dir.join("overlay.json");
    let bytes = fs::read(&p).map_err(StoreError::io("read", &p))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Manifest {
        path: p,
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::exports::{live_overlay_name, test_overlay_name};
    use rewind_formats::name::{MAX_DISK_LEN, MAX_GROUP_LEN};

    /// The longest group and disk names, made of the characters the overlay name escapes to two
    /// (`_`, `:`), still give failover overlay names that are valid overlay names: a group that
    /// replicates can always fail over.
    #[test]
    fn failover_overlay_names_fit() {
        for c in ["_", ":", "x"] {
            let g = c.repeat(MAX_GROUP_LEN);
            let d = c.repeat(MAX_DISK_LEN);
            for n in [test_overlay_name(&g, &d), live_overlay_name(&g, &d)] {
                check_overlay_name(&n).unwrap();
                // Its temporary directory name is a file name too.
                assert!(format!(".{n}.tmp").len() <= 255, "{n}");
            }
        }
        assert!(check_overlay_name(&"o".repeat(MAX_OVERLAY_NAME_LEN)).is_ok());
        assert!(check_overlay_name(&"o".repeat(MAX_OVERLAY_NAME_LEN + 1)).is_err());
        for bad in ["", ".x", "a/b", "..", "a:b"] {
            assert!(check_overlay_name(bad).is_err(), "{bad:?}");
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    /// A create cut short after its temporary directory was complete but before the rename
    /// was durable (a crash, or a power cut that kept the files but not the rename) was never
    /// acknowledged: the next start removes it instead of showing an overlay never made.
    #[test]
    fn a_half_made_overlay_is_removed_at_load() {
        use crate::store::StoreOptions;
        use rewind_formats::message::{DiskInfo, HelloGroup};
        use rewind_formats::Seq;

        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
        let hg = HelloGroup {
            group: "g".into(),
            generation: 1,
            last_acked: Seq(0),
            epoch: 0,
            disks: vec![DiskInfo {
                disk: "d".into(),
                size_bytes: 1 << 20,
            }],
        };
        crate::server::admission::hello_group(&store, &hg, "test").unwrap();
        let overlays = Overlays::load(store.clone()).unwrap();
        overlays.create("a", "g", "d", "seq:0", false).unwrap();
        let root = overlays.root.clone();
        drop(overlays);
        // What `create("b", ...)` leaves when cut just before its rename.
        let half = root.join(".b.tmp");
        copy_dir(&root.join("a"), &half);
        let mut meta = read_meta(&half).unwrap();
        meta.name = "b".into();
        fs::write(
            half.join("overlay.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        // And a directory whose overlay.json names another overlay.
        copy_dir(&root.join("a"), &root.join("c"));

        let overlays = Overlays::load(store).unwrap();
        let names: Vec<String> = overlays.list().into_iter().map(|o| o.meta.name).collect();
        assert_eq!(names, ["a"]);
        assert!(!half.exists(), "the half-made overlay is removed");
        assert!(overlays.get("b").is_err());
        // And `b` can be made now; a delete leaves nothing behind.
        overlays.create("b", "g", "d", "seq:0", false).unwrap();
        overlays.delete("b").unwrap();
        assert!(!root.join("b").exists() && !half.exists());
        assert_eq!(overlays.list().len(), 1);
    }
}
