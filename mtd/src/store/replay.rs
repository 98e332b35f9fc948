//! Building a group's in-memory state from its journal: segments loaded at start-up, chunks
//! published by the writer, and history cut at a failover's committed point.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rewind_formats::segment::{ChunkHeader, ChunkKind, Encoding, SegmentFooter};
use rewind_formats::{RecordKind, Seq};

use super::group::{GroupState, SegmentMeta};
use super::index::Source;
use super::segment_file::{self, LoadedSegment};
use super::{Result, StoreError};

/// Cap a group's state at `end`: durable, points, and the segments whose records all come after
/// it (returned, for the caller to delete). Index versions after `end` stay but are never read:
/// every view reads as of a seq at or before the durable one.
pub(super) fn cut_history(st: &mut GroupState, end: Seq) -> Vec<PathBuf> {
    st.durable = st.durable.min(end);
    st.points.truncate_after(end);
    let ids: Vec<u64> = st
        .segments
        .values()
        .filter(|s| s.first_seq > end && s.sealed)
        .map(|s| s.id)
        .collect();
    ids.iter()
        .filter_map(|id| st.segments.remove(id))
        .map(|s| s.path)
        .collect()
}

pub(super) fn remove_segment_files(paths: &[PathBuf]) {
    for p in paths {
        if let Err(e) = fs::remove_file(p) {
            tracing::warn!(segment = %p.display(), error = %e, "cannot remove a discarded segment");
        }
    }
}

pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(StoreError::io("read directory", dir))? {
        let e = e.map_err(StoreError::io("read directory", dir))?;
        if let Some(id) = e
            .file_name()
            .to_str()
            .and_then(segment_file::parse_segment_file_name)
        {
            out.push((id, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Add a loaded segment's chunks to the state (segments are added in id order, so seq order).
pub(super) fn add_segment(st: &mut GroupState, id: u64, seg: LoadedSegment) -> Result<()> {
    let file = File::open(&seg.path).map_err(StoreError::io("open segment", &seg.path))?;
    let first_seq = seg.first_seq().unwrap_or(seg.header.first_seq);
    let last_seq = seg.last_seq().unwrap_or(Seq(0));
    let horizon = st.horizon();
    st.segments.insert(
        id,
        SegmentMeta {
            id,
            path: seg.path.clone(),
            file: Arc::new(file),
            first_seq,
            last_seq,
            max_seq: seg
                .footer
                .chunks
                .iter()
                .map(|c| c.last_seq)
                .max()
                .unwrap_or(Seq(0)),
            // An unsealed segment read offline may carry preallocated space past its data.
            len_bytes: if seg.sealed {
                seg.file_len
            } else {
                seg.data_end
            },
            sealed: seg.sealed,
            newest_ms: seg
                .footer
                .chunks
                .iter()
                .map(|c| c.timestamp_ms)
                .max()
                .unwrap_or(0),
            chunks: seg.footer.chunks.len(),
            padding_bytes: seg
                .footer
                .extents
                .iter()
                .filter(|e| e.kind == RecordKind::Data && e.encoding == Encoding::Raw)
                .map(|e| super::quota::pad(u64::from(e.len)))
                .sum(),
            plain_bytes: seg
                .footer
                .extents
                .iter()
                .filter(|e| e.kind == RecordKind::Data)
                .map(|e| u64::from(e.len))
                .sum(),
        },
    );
    apply_footer(st, id, &seg.footer, horizon)?;
    st.durable = st.durable.max(last_seq);
    Ok(())
}

pub(super) fn apply_footer(
    st: &mut GroupState,
    id: u64,
    footer: &SegmentFooter,
    horizon: Seq,
) -> Result<()> {
    let ndisks = st.indexes.len();
    for e in &footer.extents {
        // Extents at or below the horizon are indexed too: their segment still exists because
        // a merge step did not finish (a crash, a stop, a full disk between the horizon and
        // the base's fdatasync), so the base may not hold them yet. Reading them from the
        // journal gives the same bytes the finished merge will; the merge prunes them.
        let disk = usize::from(e.disk);
        if disk >= ndisks {
            return Err(StoreError::Invalid {
                what: "segment",
                why: format!(
                    "segment {id} names disk index {disk} but group {} has {ndisks} disks",
                    st.manifest.group
                ),
            });
        }
        let source = data_source(id, e.kind, e.encoding, e.data_pos, e.len);
        st.indexes[disk].insert(e.offset, e.len, e.seq, source);
    }
    for c in &footer.chunks {
        if c.kind == ChunkKind::Records && c.last_seq >= horizon {
            st.points.record_time(c.last_seq, c.timestamp_ms);
        }
    }
    for t in &footer.tags {
        if t.seq >= horizon {
            st.points.add_tag(t.clone());
        }
    }
    Ok(())
}

/// Where the index reads a record of `segment_id` whose data (if any) is at `data_pos`.
fn data_source(
    segment_id: u64,
    kind: RecordKind,
    encoding: Encoding,
    data_pos: u64,
    len: u32,
) -> Source {
    match (kind, encoding) {
        (RecordKind::Data, Encoding::Raw) => Source::Segment {
            segment_id,
            pos: data_pos,
        },
        (RecordKind::Data, Encoding::Zstd) => Source::Encoded {
            segment_id,
            data_pos,
            len,
            skip: 0,
        },
        (RecordKind::Zero | RecordKind::Trim, _) => Source::Zero,
    }
}

pub(super) fn publish_chunk(st: &mut GroupState, segment_id: u64, pos: u64, h: &ChunkHeader) {
    match h.kind {
        ChunkKind::Records => {
            for r in &h.records {
                let source = data_source(segment_id, r.kind, r.encoding, pos + r.data_pos, r.len);
                st.indexes[usize::from(r.disk)].insert(r.offset, r.len, r.seq, source);
            }
            st.points.record_time(h.last_seq, h.timestamp_ms);
            st.durable = st.durable.max(h.last_seq);
        }
        ChunkKind::Tag => {
            if let Some(t) = &h.tag {
                st.points.add_tag(t.clone());
            }
        }
    }
    if let Some(meta) = st.segments.get_mut(&segment_id) {
        if h.kind == ChunkKind::Records {
            meta.last_seq = meta.last_seq.max(h.last_seq);
        }
        meta.max_seq = meta.max_seq.max(h.last_seq);
        meta.newest_ms = meta.newest_ms.max(h.timestamp_ms);
        meta.chunks += 1;
        meta.padding_bytes += super::quota::padding_of(h);
        meta.plain_bytes += h
            .records
            .iter()
            .filter(|r| r.kind == RecordKind::Data)
            .map(|r| u64::from(r.len))
            .sum::<u64>();
    }
}
