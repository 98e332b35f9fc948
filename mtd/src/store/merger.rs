//! The merger: folds journal segments that left the retention window into the base images.
//!
//! Order of durable steps, so that a crash at any point loses nothing and exposes nothing stale:
//! 1. the manifest's horizon moves to the last seq being merged (views older than it are refused
//!    from now on; it never passes a seq a view has pinned);
//! 2. the segments' records are written into the base images in seq order, and the bases fdatasynced;
//! 3. the segments leave the in-memory state (index pruned) and their files are deleted.
//!
//! Replaying a segment into the base is idempotent, so after a crash between 1 and 3 start-up simply
//! merges the segments at or below the horizon again; after a failed step at run time (a full
//! disk) the next pass does the same, since segments at or below the horizon are always taken.
//!
//! Segments are merged one at a time, each step with its own horizon: a step then needs at most
//! one segment's worth of new space (what the space reserve, `reserve.rs`, is sized for), and a
//! step that fails leaves at most one segment below the horizon, not the whole batch.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rewind_formats::segment::{Encoding, FooterExtent};
use rewind_formats::{RecordKind, Seq};

use super::files;
use super::group::{journal_dir, Group};
use super::segment_file::{load_segment, LoadMode};
use super::{Result, StoreError};

/// Merge the oldest sealed segments whose newest record is older than the retention window, as
/// far as no view pins. Merges take whole segments, oldest first, so the base always holds one
/// exact point. Returns the new horizon if it moved.
pub fn merge_expired(group: &Arc<Group>, now_ms: u64) -> Result<Option<Seq>> {
    merge_expired_upto(group, now_ms, usize::MAX)
}

/// [`merge_expired`], at most `max_segments` segments (a merge on the space reserve takes one).
pub(crate) fn merge_expired_upto(
    group: &Arc<Group>,
    now_ms: u64,
    max_segments: usize,
) -> Result<Option<Seq>> {
    // (segment id, horizon after merging up to and including it, newest timestamp so far)
    let expired: Vec<(u64, Seq, u64)> = {
        let st = group.state.read().expect("group lock");
        let cutoff = now_ms.saturating_sub(st.manifest.retention_ms);
        let (mut horizon, mut newest) = (st.horizon(), st.manifest.horizon_ms);
        st.segments
            .values()
            // Segments at or below the horizon are left by a step that failed part way: they
            // are merged first whatever the retention says now (their records are no longer
            // in any point a view may open).
            .take_while(|s| s.sealed && (s.newest_ms < cutoff || s.max_seq <= st.horizon()))
            .take(max_segments)
            .map(|s| {
                // A segment holding only a tag mentions an older seq than the one before it.
                horizon = horizon.max(s.max_seq);
                newest = newest.max(s.newest_ms);
                (s.id, horizon, newest)
            })
            .collect()
    };
    let prefix_horizons: Vec<Seq> = expired.iter().map(|e| e.1).collect();
    let Some((n, horizon)) = group.claim_merge(&prefix_horizons) else {
        return Ok(None);
    };
    for &(id, h, ms) in &expired[..n] {
        merge_segments(group, &[id], h, ms)?;
    }
    Ok(Some(horizon))
}

/// Finish a merge that a crash interrupted: segments at or below the manifest's horizon.
pub(crate) fn finish_interrupted(group: &Arc<Group>) -> Result<()> {
    let (ids, horizon, horizon_ms) = {
        let st = group.state.read().expect("group lock");
        let h = st.horizon();
        let ids: Vec<u64> = st
            .segments
            .values()
            .filter(|s| s.max_seq <= h)
            .map(|s| s.id)
            .collect();
        (ids, h, st.manifest.horizon_ms)
    };
    if ids.is_empty() {
        return Ok(());
    }
    tracing::warn!(group = %group.name, segments = ?ids, "finishing a merge interrupted by a crash");
    merge_segments(group, &ids, horizon, horizon_ms)
}

fn merge_segments(group: &Arc<Group>, ids: &[u64], horizon: Seq, horizon_ms: u64) -> Result<()> {
    // 1. Move the horizon first, durably.
    {
        let _l = group.manifest_lock.lock().expect("manifest lock");
        let st = group.state.read().expect("group lock");
        let mut m = st.manifest.clone();
        let horizon_tags = st.points.kept_at_horizon(horizon);
        drop(st);
        // The tags at the horizon are saved even when the horizon does not move: a segment
        // holding only a tag at the horizon is merged (deleted) like any other.
        if m.horizon_seq < horizon.0 || m.horizon_tags != horizon_tags {
            if m.horizon_seq < horizon.0 {
                m.horizon_seq = horizon.0;
                m.horizon_ms = horizon_ms;
            }
            m.horizon_tags = horizon_tags;
            m.store(&group.dir)?;
            group.state.write().expect("group lock").manifest = m;
        }
    }
    // 2. Replay the records into the base images.
    let (paths, bases) = {
        let st = group.state.read().expect("group lock");
        let paths: Vec<_> = ids
            .iter()
            .filter_map(|id| st.segments.get(id).map(|s| s.path.clone()))
            .collect();
        (paths, st.bases.clone())
    };
    let mut bytes = 0u64;
    for path in &paths {
        let seg = load_segment(path, LoadMode::ReadOnly)?;
        let file = File::open(path).map_err(StoreError::io("open segment", path))?;
        let mut extents: Vec<FooterExtent> = seg.footer.extents.clone();
        extents.sort_unstable_by_key(|e| e.seq);
        bytes += replay(&file, path, &extents, &bases)?;
    }
    for (i, b) in bases.iter().enumerate() {
        b.sync_data().map_err(StoreError::io(
            "fdatasync base image",
            group.dir.join(format!("base #{i}")),
        ))?;
    }
    // 3. Drop the merged segments from memory, then from disk.
    {
        let mut st = group.state.write().expect("group lock");
        // Only these segments' records leave the index: a step that finishes a failed one may
        // merge one of several segments below the horizon, and the others' records (not in
        // the base yet) must still be read from their segments.
        let mut merged_upto = Seq(0);
        for id in ids {
            if let Some(s) = st.segments.remove(id) {
                merged_upto = merged_upto.max(s.max_seq);
            }
        }
        for ix in &mut st.indexes {
            ix.prune_upto(merged_upto.min(horizon));
        }
        // Their ids may be given to new segments: no cached frame may outlive them.
        group.frames.forget_all();
        st.points.prune_before(horizon);
        st.durable = st.durable.max(horizon);
    }
    for path in &paths {
        std::fs::remove_file(path).map_err(StoreError::io("remove merged segment", path))?;
    }
    files::sync_dir(&journal_dir(&group.dir))?;
    tracing::info!(group = %group.name, horizon = horizon.0, segments = ids.len(), bytes, "merged expired journal into the base images");
    Ok(())
}

/// Write extents (in seq order) into the base images. Returns bytes written.
fn replay(
    seg: &File,
    path: &std::path::Path,
    extents: &[FooterExtent],
    bases: &[Arc<File>],
) -> Result<u64> {
    let mut buf = Vec::new();
    let mut bytes = 0;
    for e in extents {
        let base = bases
            .get(usize::from(e.disk))
            .ok_or_else(|| StoreError::Invalid {
                what: "segment",
                why: format!(
                    "{} names disk index {} that the group lacks",
                    path.display(),
                    e.disk
                ),
            })?;
        match e.kind {
            RecordKind::Data => {
                buf.resize(e.len as usize, 0);
                match e.encoding {
                    Encoding::Raw => seg.read_exact_at(&mut buf, e.data_pos),
                    Encoding::Zstd => super::frames::read_whole(seg, e.data_pos, e.len, &mut buf),
                }
                .map_err(StoreError::io("read segment", path))?;
                base.write_all_at(&buf, e.offset)
                    .map_err(StoreError::io("write base image", path))?;
                bytes += u64::from(e.len);
            }
            RecordKind::Zero | RecordKind::Trim => {
                nix::fcntl::fallocate(
                    base.as_raw_fd(),
                    nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                        | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                    e.offset as i64,
                    i64::from(e.len),
                )
                .map_err(|errno| StoreError::Io {
                    op: "punch hole in base image",
                    path: path.to_path_buf(),
                    source: errno.into(),
                })?;
            }
        }
    }
    Ok(bytes)
}
