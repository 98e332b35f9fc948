//! Per-disk extent index: "which record holds byte range R as of seq S".
//!
//! Records are whole images of the bytes they cover, so the answer for any byte is the newest record
//! at or before S that covers it, else the base image. Extents are keyed by their start offset; each
//! key keeps its versions in seq order. A lookup scans the starts that can reach the range (no record
//! is longer than `max_len`), keeps per start the newest versions at or before S that are not shadowed
//! by a newer one at the same start, then paints them newest first over the range.

use std::collections::BTreeMap;

use rewind_formats::Seq;
use smallvec::SmallVec;

/// Where one piece of a disk range is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The base image at the same offset (state at the retention horizon).
    Base,
    /// Zeroes (a zero or trim record).
    Zero,
    /// Journal segment `segment_id`, at file position `pos`.
    Segment { segment_id: u64, pos: u64 },
    /// A zstd-encoded record of journal segment `segment_id` (its data at `data_pos`, `len`
    /// plain bytes), from plain byte `skip` of the record on (see `store::frames`).
    Encoded {
        segment_id: u64,
        data_pos: u64,
        len: u32,
        skip: u64,
    },
}

impl Source {
    /// The journal segment the bytes are in, if any.
    pub(crate) fn segment_id(&self) -> Option<u64> {
        match *self {
            Source::Segment { segment_id, .. } | Source::Encoded { segment_id, .. } => {
                Some(segment_id)
            }
            Source::Base | Source::Zero => None,
        }
    }
}

/// A contiguous part of a looked-up range with one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) source: Source,
    /// The seq of the record this piece comes from (0 for the base).
    pub(crate) seq: Seq,
}

/// One version of the bytes at a start offset. 24 bytes: this is the bulk of the index memory.
#[derive(Clone, Copy, Debug)]
struct Version {
    seq: u64,
    /// Position of the data in the segment (unused for zero records).
    pos: u64,
    /// Segment id, or `ZERO_SEGMENT` for zero and trim records; `ENCODED` set for a
    /// zstd-encoded record (`pos` is then its data_pos): no bigger than a raw version.
    segment: u32,
    len: u32,
}

const ZERO_SEGMENT: u32 = u32::MAX;
/// Flag bit of `Version::segment`: the record is encoded. Segment ids stay below it.
const ENCODED: u32 = 1 << 31;

/// Upper estimate of the memory one record adds: a B-tree entry (key, inline version, node
/// overhead), or a version spilled to the heap, plus its extent in the open segment's footer
/// that the writer keeps until it seals. What the index quota counts (see `store::quota`).
pub(crate) const EXTENT_COST_BYTES: usize = size_of::<u64>()
    + size_of::<Versions>()
    + 16
    + size_of::<Version>()
    + size_of::<rewind_formats::segment::FooterExtent>();

/// The versions at one start offset, oldest first. Almost always one, which this keeps inline:
/// no allocation per extent, and less memory.
type Versions = SmallVec<[Version; 1]>;

#[derive(Default, Debug)]
pub(crate) struct DiskIndex {
    by_start: BTreeMap<u64, Versions>,
    /// Longest record ever inserted: bounds how far before a range a covering extent can start.
    max_len: u64,
    extents: usize,
}

impl DiskIndex {
    /// Add a record. Callers insert in seq order, which keeps every version list sorted.
    pub(crate) fn insert(&mut self, offset: u64, len: u32, seq: Seq, source: Source) {
        let id = |segment_id: u64| {
            u32::try_from(segment_id)
                .ok()
                .filter(|id| id & ENCODED == 0)
                .expect("segment ids stay below 2^31")
        };
        let (segment, pos) = match source {
            Source::Segment { segment_id, pos } => (id(segment_id), pos),
            Source::Encoded {
                segment_id,
                data_pos,
                ..
            } => (id(segment_id) | ENCODED, data_pos),
            Source::Zero | Source::Base => (ZERO_SEGMENT, 0),
        };
        let versions = self.by_start.entry(offset).or_default();
        debug_assert!(versions.last().is_none_or(|v| v.seq < seq.0));
        versions.push(Version {
            seq: seq.0,
            pos,
            segment,
            len,
        });
        self.max_len = self.max_len.max(u64::from(len));
        self.extents += 1;
    }

    /// The sources of `[start, end)` as of `at`, in offset order, covering the range exactly.
    pub(crate) fn lookup(&self, start: u64, end: u64, at: Seq) -> Vec<Piece> {
        let mut candidates: Vec<(u64, u64, u64, Version)> = Vec::new(); // (seq, start, end, version)
        let lo = start.saturating_sub(self.max_len.saturating_sub(1));
        for (&s, versions) in self.by_start.range(lo..end) {
            let newest = versions.partition_point(|v| v.seq <= at.0);
            let mut reach = s; // furthest end already covered by a newer version at this start
            for v in versions[..newest].iter().rev() {
                let e = s + u64::from(v.len);
                if e > reach {
                    if e > start {
                        candidates.push((v.seq, s, e, *v));
                    }
                    reach = e;
                }
                if reach >= s + self.max_len {
                    break; // nothing older at this start can reach further
                }
            }
        }
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));

        let mut uncovered = vec![(start, end)];
        let mut pieces = Vec::new();
        for (seq, cs, ce, v) in candidates {
            if uncovered.is_empty() {
                break;
            }
            let mut next = Vec::with_capacity(uncovered.len() + 1);
            for (us, ue) in uncovered {
                let (ps, pe) = (us.max(cs), ue.min(ce));
                if ps >= pe {
                    next.push((us, ue));
                    continue;
                }
                let source = if v.segment == ZERO_SEGMENT {
                    Source::Zero
                } else if v.segment & ENCODED != 0 {
                    Source::Encoded {
                        segment_id: u64::from(v.segment & !ENCODED),
                        data_pos: v.pos,
                        len: v.len,
                        skip: ps - cs,
                    }
                } else {
                    Source::Segment {
                        segment_id: u64::from(v.segment),
                        pos: v.pos + (ps - cs),
                    }
                };
                pieces.push(Piece {
                    offset: ps,
                    len: pe - ps,
                    source,
                    seq: Seq(seq),
                });
                if us < ps {
                    next.push((us, ps));
                }
                if pe < ue {
                    next.push((pe, ue));
                }
            }
            uncovered = next;
        }
        for (us, ue) in uncovered {
            pieces.push(Piece {
                offset: us,
                len: ue - us,
                source: Source::Base,
                seq: Seq(0),
            });
        }
        pieces.sort_unstable_by_key(|p| p.offset);
        pieces
    }

    /// The ranges written by records with seq in `(after, upto]`, in start order (overlaps
    /// kept: callers only ask which chunks they touch).
    pub(crate) fn written_in(&self, after: Seq, upto: Seq) -> Vec<(u64, u64)> {
        self.by_start
            .iter()
            .filter_map(|(&s, versions)| {
                let len = versions
                    .iter()
                    .filter(|v| v.seq > after.0 && v.seq <= upto.0)
                    .map(|v| u64::from(v.len))
                    .max()?;
                Some((s, len))
            })
            .collect()
    }

    /// Forget every version at or before `horizon`: the base image now holds them.
    pub(crate) fn prune_upto(&mut self, horizon: Seq) {
        let mut removed = 0;
        self.by_start.retain(|_, versions| {
            let before = versions.len();
            versions.retain(|v| v.seq > horizon.0);
            removed += before - versions.len();
            !versions.is_empty()
        });
        self.extents -= removed;
    }

    pub(crate) fn extents(&self) -> usize {
        self.extents
    }

    /// Estimated heap bytes: B-tree entries (key, inline versions, node overhead) plus the
    /// versions that spilled to the heap.
    pub(crate) fn memory_bytes(&self) -> usize {
        let per_key = size_of::<u64>() + size_of::<Versions>() + 16;
        let spilled: usize = self
            .by_start
            .values()
            .filter(|v| v.spilled())
            .map(|v| v.capacity())
            .sum();
        self.by_start.len() * per_key + spilled * size_of::<Version>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(pos: u64) -> Source {
        Source::Segment { segment_id: 1, pos }
    }

    #[test]
    fn written_in_names_the_ranges_of_records_in_a_seq_range() {
        let mut ix = DiskIndex::default();
        ix.insert(0, 4096, Seq(1), seg(0));
        ix.insert(65536, 8192, Seq(2), seg(4096));
        ix.insert(0, 16384, Seq(3), Source::Zero);
        ix.insert(1 << 20, 4096, Seq(4), seg(8192));
        assert_eq!(
            ix.written_in(Seq(1), Seq(3)),
            vec![(0, 16384), (65536, 8192)]
        );
        assert_eq!(ix.written_in(Seq(3), Seq(4)), vec![(1 << 20, 4096)]);
        assert_eq!(ix.written_in(Seq(4), Seq(9)), vec![]);
    }

    #[test]
    fn newest_wins_and_gaps_are_base() {
        let mut ix = DiskIndex::default();
        ix.insert(0, 8192, Seq(1), seg(0));
        ix.insert(4096, 4096, Seq(2), seg(100_000));
        let p = ix.lookup(0, 12288, Seq(2));
        assert_eq!(
            p,
            vec![
                Piece {
                    offset: 0,
                    len: 4096,
                    source: seg(0),
                    seq: Seq(1)
                },
                Piece {
                    offset: 4096,
                    len: 4096,
                    source: seg(100_000),
                    seq: Seq(2)
                },
                Piece {
                    offset: 8192,
                    len: 4096,
                    source: Source::Base,
                    seq: Seq(0)
                },
            ]
        );
        let p = ix.lookup(4096, 8192, Seq(1));
        assert_eq!(
            p,
            vec![Piece {
                offset: 4096,
                len: 4096,
                source: seg(4096),
                seq: Seq(1)
            }]
        );
    }

    #[test]
    fn shorter_newer_version_at_same_start_keeps_older_tail() {
        let mut ix = DiskIndex::default();
        ix.insert(0, 8192, Seq(1), seg(0));
        ix.insert(0, 4096, Seq(2), Source::Zero);
        let p = ix.lookup(0, 8192, Seq(5));
        assert_eq!(p[0].source, Source::Zero);
        assert_eq!(
            p[1],
            Piece {
                offset: 4096,
                len: 4096,
                source: seg(4096),
                seq: Seq(1)
            }
        );
    }

    #[test]
    fn encoded_versions_name_their_record_and_the_skip_into_it() {
        let mut ix = DiskIndex::default();
        let enc = |data_pos, len| Source::Encoded {
            segment_id: 7,
            data_pos,
            len,
            skip: 0,
        };
        ix.insert(0, 65536, Seq(1), enc(8192, 65536));
        ix.insert(4096, 4096, Seq(2), seg(100));
        let p = ix.lookup(0, 65536, Seq(2));
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].source, enc(8192, 65536));
        assert_eq!(p[1].source, seg(100));
        assert_eq!(
            p[2],
            Piece {
                offset: 8192,
                len: 65536 - 8192,
                source: Source::Encoded {
                    segment_id: 7,
                    data_pos: 8192,
                    len: 65536,
                    skip: 8192
                },
                seq: Seq(1)
            }
        );
        assert_eq!(p[2].source.segment_id(), Some(7));
        // No more memory than a raw version.
        assert_eq!(size_of::<Version>(), 24);
    }

    #[test]
    fn prune_drops_old_versions() {
        let mut ix = DiskIndex::default();
        for s in 1..=10 {
            ix.insert(0, 4096, Seq(s), seg(s * 4096));
        }
        ix.prune_upto(Seq(7));
        assert_eq!(ix.extents(), 3);
        assert_eq!(ix.lookup(0, 4096, Seq(10))[0].seq, Seq(10));
    }

    proptest! {
        /// The index answers like a byte-per-seq model for random overlapping records.
        #[test]
        fn matches_model(recs in prop::collection::vec((0u64..64, 1u32..16), 1..60), at_frac in 0.0f64..1.0) {
            const S: u64 = 512;
            let mut ix = DiskIndex::default();
            for (i, (off, len)) in recs.iter().enumerate() {
                ix.insert(off * S, len * S as u32, Seq(i as u64 + 1), seg(i as u64 * 1_000_000));
            }
            let at = ((recs.len() as f64) * at_frac) as u64;
            // Model: for each sector, newest seq <= at covering it.
            let mut model = vec![0u64; 96];
            for (i, (off, len)) in recs.iter().enumerate() {
                let seq = i as u64 + 1;
                if seq <= at {
                    for s in *off..(*off + u64::from(*len)) { model[s as usize] = seq; }
                }
            }
            let pieces = ix.lookup(0, 96 * S, Seq(at));
            let mut covered = 0;
            for p in &pieces {
                prop_assert_eq!(p.offset, covered);
                covered += p.len;
                for sector in p.offset / S..(p.offset + p.len) / S {
                    prop_assert_eq!(model[sector as usize], p.seq.0);
                    if let Source::Segment { pos, .. } = p.source {
                        let i = (p.seq.0 - 1) as usize;
                        let rec_start = recs[i].0 * S;
                        prop_assert_eq!(pos, (i as u64) * 1_000_000 + (p.offset - rec_start));
                    }
                }
            }
            prop_assert_eq!(covered, 96 * S);
        }
    }
}
