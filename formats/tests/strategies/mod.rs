//! proptest strategies for every layout, shared by the property tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use rewind_formats::*;

pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._:-]{1,24}",
        1 => "[a-z]{255}",
    ]
    .prop_filter("reserved names", |s| s != "." && s != "..")
}

/// A group or disk name: these have their own, shorter limit (`rewind_formats::name`).
pub fn group_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._:-]{1,24}",
        1 => "[a-z]{48}",
    ]
    .prop_filter("reserved names", |s| s != "." && s != "..")
}

pub fn text() -> impl Strategy<Value = String> {
    // Up to 200 chars of any Unicode: at most 800 bytes, under MAX_MESSAGE_LEN.
    ".{0,200}"
}

pub fn seq() -> impl Strategy<Value = Seq> {
    (1..u64::MAX).prop_map(Seq)
}

pub fn tag_kind() -> impl Strategy<Value = TagKind> {
    prop_oneof![
        Just(TagKind::AppConsistent),
        Just(TagKind::User),
        Just(TagKind::Failover),
        Just(TagKind::SyncBegin),
        Just(TagKind::SyncEnd)
    ]
}

pub fn tag_info() -> impl Strategy<Value = TagInfo> {
    (seq(), tag_kind(), any::<u64>(), name()).prop_map(|(seq, kind, timestamp_ms, name)| TagInfo {
        seq,
        kind,
        timestamp_ms,
        name,
    })
}

fn disks() -> impl Strategy<Value = Vec<DiskInfo>> {
    btree_map(group_name(), 1..(u64::MAX / SECTOR), 0..4).prop_map(|m: BTreeMap<String, u64>| {
        m.into_iter()
            .map(|(disk, sectors)| DiskInfo {
                disk,
                size_bytes: sectors * SECTOR,
            })
            .collect()
    })
}

pub fn hello() -> impl Strategy<Value = Hello> {
    let group = (any::<u64>(), any::<u64>(), any::<u64>(), disks());
    let software = proptest::option::of("[!-~]{1,64}");
    let window = 0..=dedup::MAX_DEDUP_WINDOW_BLOCKS;
    (
        name(),
        software,
        window,
        any::<bool>(),
        btree_map(group_name(), group, 0..4),
    )
        .prop_map(
            |(agent, software, dedup_window, framed_records, groups)| Hello {
                agent,
                software,
                dedup_window,
                framed_records,
                groups: groups
                    .into_iter()
                    .map(|(group, (generation, acked, epoch, disks))| HelloGroup {
                        group,
                        generation,
                        last_acked: Seq(acked),
                        epoch,
                        disks,
                    })
                    .collect(),
            },
        )
}

pub fn welcome() -> impl Strategy<Value = Welcome> {
    let status = prop_oneof![Just(ResumeStatus::Resume), Just(ResumeStatus::ResyncNeeded)];
    let group = (group_name(), any::<u64>(), status, any::<u64>()).prop_map(
        |(group, generation, status, d)| WelcomeGroup {
            group,
            generation,
            status,
            durable: Seq(d),
        },
    );
    let window = 0..=dedup::MAX_DEDUP_WINDOW_BLOCKS;
    (vec(group, 0..5), window, any::<bool>()).prop_map(|(groups, dedup_window, framed_records)| {
        Welcome {
            groups,
            dedup_window,
            framed_records,
        }
    })
}

pub fn record_kind() -> impl Strategy<Value = RecordKind> {
    prop_oneof![
        3 => Just(RecordKind::Data),
        1 => Just(RecordKind::Zero),
        1 => Just(RecordKind::Trim)
    ]
}

/// An owned record (RecordRef borrows).
#[derive(Clone, Debug)]
pub struct OwnedRecord {
    pub disk: u16,
    pub kind: RecordKind,
    pub offset: u64,
    pub len: u32,
    pub data: Vec<u8>,
}

impl OwnedRecord {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            disk: self.disk,
            kind: self.kind,
            offset: self.offset,
            len: self.len,
            data: &self.data,
        }
    }
}

pub fn record() -> impl Strategy<Value = OwnedRecord> {
    let max_sectors = u64::MAX / SECTOR - u64::from(MAX_RECORD_LEN) / SECTOR;
    (any::<u16>(), record_kind(), 0..max_sectors, 1u32..=24).prop_flat_map(
        |(disk, kind, off_sectors, len_sectors)| {
            let len = len_sectors * SECTOR as u32;
            let data_len = if kind == RecordKind::Data {
                len as usize
            } else {
                0
            };
            vec(any::<u8>(), data_len).prop_map(move |data| OwnedRecord {
                disk,
                kind,
                offset: off_sectors * SECTOR,
                len,
                data,
            })
        },
    )
}

pub fn records() -> impl Strategy<Value = Vec<OwnedRecord>> {
    vec(record(), 1..8)
}

pub fn refs(r: &[OwnedRecord]) -> Vec<RecordRef<'_>> {
    r.iter().map(OwnedRecord::as_ref).collect()
}

pub fn batch() -> impl Strategy<Value = (Batch, Vec<OwnedRecord>)> {
    (
        group_name(),
        any::<u64>(),
        1..u64::MAX / 2,
        any::<u64>(),
        records(),
        1..4i32,
    )
        .prop_map(|(group, generation, first, ts, recs, level)| {
            let b = Batch::build(&group, generation, Seq(first), ts, &refs(&recs), level);
            (b, recs)
        })
}

pub fn message() -> impl Strategy<Value = Message> {
    let control_op = prop_oneof![
        Just(ControlOp::Drain),
        Just(ControlOp::Pause),
        Just(ControlOp::Resume),
        Just(ControlOp::TagRequest),
        Just(ControlOp::Resync),
        Just(ControlOp::Policy),
    ];
    prop_oneof![
        hello().prop_map(Message::Hello),
        welcome().prop_map(Message::Welcome),
        batch().prop_map(|(b, _)| Message::Batch(b)),
        (group_name(), any::<u64>(), tag_info()).prop_map(|(group, generation, tag)| Message::Tag(
            Tag {
                group,
                generation,
                tag
            }
        )),
        (group_name(), any::<u64>()).prop_map(|(group, d)| Message::Ack(Ack {
            group,
            durable: Seq(d)
        })),
        (
            group_name(),
            any::<u16>(),
            0..(u64::MAX / SECTOR / 2),
            1u32..=256,
            vec(any::<u64>(), 0..64)
        )
            .prop_map(|(group, disk, off, bs, hashes)| Message::Hashes(Hashes {
                group,
                disk,
                offset: off * SECTOR,
                block_size: bs * SECTOR as u32,
                hashes,
            })),
        (group_name(), control_op, text()).prop_map(|(group, op, arg)| Message::Control(Control {
            group,
            op,
            arg
        })),
        (any::<u16>(), text()).prop_map(|(code, message)| Message::Error(ErrorMsg {
            code: ErrorCode::from_u16(code),
            message,
        })),
    ]
}

pub fn segment_header() -> impl Strategy<Value = SegmentHeader> {
    (any::<u64>(), name(), any::<u64>(), seq(), any::<u64>()).prop_map(
        |(segment_id, group, generation, first_seq, created_ms)| SegmentHeader {
            segment_id,
            group,
            generation,
            first_seq,
            created_ms,
        },
    )
}

/// A footer whose chunks, extents and positions are consistent with `footer_offset`.
pub fn footer() -> impl Strategy<Value = (SegmentFooter, u64)> {
    let chunk = (
        1u64..4,
        1..u64::MAX / 2,
        0u64..10,
        any::<u64>(),
        any::<bool>(),
    );
    let extent = (
        any::<u16>(),
        record_kind(),
        0..(u64::MAX / SECTOR / 2),
        1u32..=64,
        seq(),
        1u64..1000,
    );
    (vec(chunk, 0..6), vec(tag_info(), 0..4), vec(extent, 0..20)).prop_map(
        |(chunks, tags, extents)| {
            let footer_offset = 2000 * BLOCK as u64;
            let mut pos = BLOCK as u64;
            let chunks = chunks
                .into_iter()
                .map(|(gap, first, span, ts, is_tag)| {
                    let c = ChunkSummary {
                        pos,
                        first_seq: Seq(first),
                        last_seq: Seq(first + span),
                        timestamp_ms: ts,
                        kind: if is_tag {
                            ChunkKind::Tag
                        } else {
                            ChunkKind::Records
                        },
                    };
                    pos += gap * BLOCK as u64;
                    c
                })
                .collect();
            let mut f = SegmentFooter {
                chunks,
                tags,
                extents: extents
                    .into_iter()
                    .map(|(disk, kind, off, len_sectors, seq, block)| FooterExtent {
                        disk,
                        kind,
                        offset: off * SECTOR,
                        len: len_sectors * SECTOR as u32,
                        seq,
                        data_pos: if kind == RecordKind::Data {
                            block * BLOCK as u64
                        } else {
                            0
                        },
                        // Some data extents encoded: version-2 footers round trip too.
                        encoding: if kind == RecordKind::Data && block % 2 == 1 {
                            Encoding::Zstd
                        } else {
                            Encoding::Raw
                        },
                    })
                    .collect(),
            };
            f.sort_extents();
            f.extents.dedup_by_key(|e| (e.disk, e.offset, e.seq));
            (f, footer_offset)
        },
    )
}
