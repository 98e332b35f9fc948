//! What the rest of the daemon asks of a group. Each method takes the group's state lock for
//! as long as its answer needs and returns owned values, so no caller outside the store holds
//! the lock (or learns how the state is laid out).

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use rewind_formats::message::TagInfo;
use rewind_formats::Seq;

use super::group::Group;
use super::index::Piece;
use super::manifest::Manifest;
use super::points::{PointSpec, Points};
use super::{Result, StoreError};

/// What reading a range of a disk at a seq needs, taken under the lock and read after it:
/// cloned file handles stay valid even if the merger deletes a segment meanwhile.
pub(crate) struct ReadPlan {
    /// The range in pieces, each with where its bytes are.
    pub(crate) pieces: Vec<Piece>,
    /// The journal segments the pieces name, by id.
    pub(crate) segments: Vec<(u64, Arc<File>)>,
    /// The disk's base image.
    pub(crate) base: Arc<File>,
    /// The group's frame cache generation when the plan was made (see `frames::FrameCache`).
    pub(crate) frame_generation: u64,
}

impl ReadPlan {
    /// The file of segment `id`, which one of the plan's pieces names.
    pub(crate) fn segment(&self, id: u64) -> &Arc<File> {
        &self
            .segments
            .iter()
            .find(|(sid, _)| *sid == id)
            .expect("the plan holds every segment its pieces name")
            .1
    }
}

/// A point of one disk a spec resolved to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DiskPoint {
    pub(crate) seq: Seq,
    /// Source time of the point, when the group holds times.
    pub(crate) time_ms: Option<u64>,
    pub(crate) size_bytes: u64,
}

/// A copy of a group's state for reports (`rewind-mtd inspect`).
pub(crate) struct Snapshot {
    pub(crate) manifest: Manifest,
    pub(crate) durable: Seq,
    pub(crate) journal_bytes: u64,
    /// Per disk, in manifest order: extents in the index and the index's memory.
    pub(crate) indexes: Vec<IndexSize>,
    pub(crate) segments: BTreeMap<u64, SegmentSummary>,
    pub(crate) points: Points,
}

/// The size of one disk's index.
pub(crate) struct IndexSize {
    pub(crate) extents: usize,
    pub(crate) memory_bytes: usize,
}

/// One journal segment, for reports.
pub(crate) struct SegmentSummary {
    pub(crate) id: u64,
    pub(crate) first_seq: Seq,
    pub(crate) last_seq: Seq,
    pub(crate) len_bytes: u64,
    pub(crate) sealed: bool,
    pub(crate) chunks: usize,
}

impl Group {
    /// A copy of the manifest as it is now.
    pub(crate) fn manifest(&self) -> Manifest {
        self.state.read().expect("group lock").manifest.clone()
    }

    /// The agent recorded as the group's owner.
    pub(crate) fn owner(&self) -> Option<String> {
        self.state
            .read()
            .expect("group lock")
            .manifest
            .owner
            .clone()
    }

    /// The oldest seq a view may read: everything up to it is merged into the base.
    pub fn horizon(&self) -> Seq {
        self.state.read().expect("group lock").horizon()
    }

    /// The disks with their sizes, in manifest order.
    pub(crate) fn disks(&self) -> Vec<(String, u64)> {
        let st = self.state.read().expect("group lock");
        st.manifest
            .disks
            .iter()
            .map(|d| (d.name.clone(), d.size_bytes))
            .collect()
    }

    /// The disk names, in manifest order.
    pub(crate) fn disk_names(&self) -> Vec<String> {
        self.disks().into_iter().map(|(name, _)| name).collect()
    }

    pub(crate) fn disk_index(&self, disk: &str) -> Option<usize> {
        self.state
            .read()
            .expect("group lock")
            .manifest
            .disk_index(disk)
    }

    /// Name and size of the disk at `ix` (which must exist).
    pub(crate) fn disk(&self, ix: usize) -> (String, u64) {
        let st = self.state.read().expect("group lock");
        let d = &st.manifest.disks[ix];
        (d.name.clone(), d.size_bytes)
    }

    /// The size of the disk at `ix` and the durable seq, read together.
    pub(crate) fn disk_size_at_durable(&self, ix: usize) -> Option<(u64, Seq)> {
        let st = self.state.read().expect("group lock");
        Some((st.manifest.disks.get(ix)?.size_bytes, st.durable))
    }

    /// The seq a point spec names.
    pub(crate) fn resolve(&self, spec: &PointSpec) -> Result<Seq> {
        let st = self.state.read().expect("group lock");
        st.points.resolve(spec, st.durable, st.horizon())
    }

    /// The index of `disk` and the seq `spec` names, read together (what a view opens).
    pub(crate) fn resolve_disk_ix(&self, disk: &str, spec: &PointSpec) -> Result<(usize, Seq)> {
        let st = self.state.read().expect("group lock");
        let ix = st
            .manifest
            .disk_index(disk)
            .ok_or_else(|| StoreError::UnknownDisk {
                group: self.name.clone(),
                disk: disk.into(),
            })?;
        Ok((ix, st.points.resolve(spec, st.durable, st.horizon())?))
    }

    /// The point a spec names on one disk, as an open would resolve it (without pinning it).
    pub(crate) fn resolve_on_disk(&self, disk: &str, spec: &PointSpec) -> Result<DiskPoint> {
        let st = self.state.read().expect("group lock");
        let size_bytes = st
            .manifest
            .disks
            .iter()
            .find(|d| d.name == disk)
            .map(|d| d.size_bytes)
            .ok_or_else(|| StoreError::UnknownDisk {
                group: self.name.clone(),
                disk: disk.into(),
            })?;
        let seq = st.points.resolve(spec, st.durable, st.horizon())?;
        Ok(DiskPoint {
            seq,
            time_ms: st.points.time_of(seq),
            size_bytes,
        })
    }

    /// Whether every point up to the durable one is recoverable (no resync under way).
    pub(crate) fn consistent(&self) -> bool {
        self.state.read().expect("group lock").points.consistent()
    }

    /// The tags in the window, oldest first.
    pub(crate) fn tags(&self) -> Vec<TagInfo> {
        self.state
            .read()
            .expect("group lock")
            .points
            .tags()
            .to_vec()
    }

    /// The source time of a seq.
    pub(crate) fn time_of(&self, seq: Seq) -> Option<u64> {
        self.state.read().expect("group lock").points.time_of(seq)
    }

    /// The source time of the newest durable seq.
    pub(crate) fn newest_time(&self) -> Option<u64> {
        let st = self.state.read().expect("group lock");
        st.points.time_of(st.durable)
    }

    /// Records in the group's index (journal not merged yet).
    pub(crate) fn extents(&self) -> u64 {
        self.state.read().expect("group lock").extents()
    }

    /// Padding bytes in the group's journal segments.
    pub(crate) fn padding_bytes(&self) -> u64 {
        self.state.read().expect("group lock").padding_bytes()
    }

    /// Where the bytes of `[offset, end)` of disk `ix` as of `seq` are.
    pub(crate) fn read_plan(&self, ix: usize, offset: u64, end: u64, seq: Seq) -> Result<ReadPlan> {
        let st = self.state.read().expect("group lock");
        let pieces = st.indexes[ix].lookup(offset, end, seq);
        let mut segments = Vec::new();
        for p in &pieces {
            if let Some(segment_id) = p.source.segment_id() {
                if !segments.iter().any(|(id, _)| *id == segment_id) {
                    let f = st
                        .segment_file(segment_id)
                        .ok_or_else(|| StoreError::Invalid {
                            what: "index",
                            why: format!(
                                "group {} refers to missing segment {segment_id}",
                                self.name
                            ),
                        })?;
                    segments.push((segment_id, f));
                }
            }
        }
        Ok(ReadPlan {
            pieces,
            segments,
            base: st.bases[ix].clone(),
            frame_generation: self.frames.generation(),
        })
    }

    /// The pieces of `[offset, end)` of disk `ix` as of `seq` and the disk's base image (for
    /// extent maps, which read no journal bytes).
    pub(crate) fn extent_plan(
        &self,
        ix: usize,
        offset: u64,
        end: u64,
        seq: Seq,
    ) -> (Vec<Piece>, Arc<File>) {
        let st = self.state.read().expect("group lock");
        (
            st.indexes[ix].lookup(offset, end, seq),
            st.bases[ix].clone(),
        )
    }

    /// A copy of the group's state for a report.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let st = self.state.read().expect("group lock");
        Snapshot {
            manifest: st.manifest.clone(),
            durable: st.durable,
            journal_bytes: st.journal_bytes(),
            indexes: st
                .indexes
                .iter()
                .map(|ix| IndexSize {
                    extents: ix.extents(),
                    memory_bytes: ix.memory_bytes(),
                })
                .collect(),
            segments: st
                .segments
                .values()
                .map(|s| {
                    let summary = SegmentSummary {
                        id: s.id,
                        first_seq: s.first_seq,
                        last_seq: s.last_seq,
                        len_bytes: s.len_bytes,
                        sealed: s.sealed,
                        chunks: s.chunks,
                    };
                    (s.id, summary)
                })
                .collect(),
            points: st.points.clone(),
        }
    }
}
