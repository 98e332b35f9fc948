//! Golden vectors: files in `tests/vectors/` written by each version of each layout, which every
//! later version of this crate must still read. Frames have four versions: 1 (`frame-*.bin`),
//! 2 (`frame-*-v2.bin`, whose HELLO carries the agent's software version) and 3 (`-v3`, whose
//! HELLO and WELCOME carry the dedup window; other messages are version 2's under a version 3
//! header, so only those two have version 3 files), and 4 (`-v4`, whose HELLO carries each
//! group's epoch: only HELLO has a version 4 file), and 5 (`-v5`, whose HELLO and WELCOME
//! carry a flags byte: framed records asked and granted); the target still writes versions 1
//! and 2 to agents that speak them, so every encoder must keep its bytes. `records-dedup.bin`
//! is a deduplicated record payload (version 3 sessions with a dedup window);
//! `records-framed-zstd.bin` a payload with a framed record (sessions granted framed records).
//!
//! Each file decodes to the constants below. A file is never rewritten: when a layout changes,
//! its version is bumped, the new version's files are added beside the old ones (`-v2` before
//! `.bin`), and the old files keep their checks here.
//!
//! To write files that are missing (only when adding a vector):
//! `cargo test -p rewind-formats --test golden -- --ignored write_missing_vectors`

use std::path::{Path, PathBuf};

use rewind_formats::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(name: &str) -> Vec<u8> {
    let p = dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("golden vector {}: {e}", p.display()))
}

// ---- expected values (version 1) ----

const T0: u64 = 1_764_115_200_000; // 2025-11-26T00:00:00Z in ms

fn data_a() -> Vec<u8> {
    (0..1024u32).map(|i| (i * 31 + 7) as u8).collect()
}

fn data_b() -> Vec<u8> {
    (0..512u32).map(|i| (i ^ 0xa5) as u8).collect()
}

fn records_a(a: &[u8]) -> Vec<RecordRef<'_>> {
    vec![
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 1 << 20,
            len: 1024,
            data: a,
        },
        RecordRef {
            disk: 1,
            kind: RecordKind::Zero,
            offset: 4096,
            len: 8192,
            data: &[],
        },
        RecordRef {
            disk: 0,
            kind: RecordKind::Trim,
            offset: 512,
            len: 512,
            data: &[],
        },
    ]
}

fn records_b(b: &[u8]) -> Vec<RecordRef<'_>> {
    vec![RecordRef {
        disk: 1,
        kind: RecordKind::Data,
        offset: 0,
        len: 512,
        data: b,
    }]
}

/// The HELLO as version 1 carries it: no software version.
fn hello() -> Message {
    hello_with(None)
}

/// The HELLO of version 2.
fn hello_v2() -> Message {
    hello_with(Some("0.1.0+g0123abc".into()))
}

/// The HELLO of version 3: a relay asking for a dedup window.
fn hello_v3() -> Message {
    let Message::Hello(mut h) = hello_with(Some("relay-0.1.0".into())) else {
        unreachable!()
    };
    h.dedup_window = 8192;
    Message::Hello(h)
}

/// The HELLO of version 4: as version 3's, each group with its epoch.
fn hello_v4() -> Message {
    let Message::Hello(mut h) = hello_v3() else {
        unreachable!()
    };
    h.groups[0].epoch = 5;
    h.groups[1].epoch = 1 << 40;
    Message::Hello(h)
}

/// The HELLO of version 5: as version 4's, asking for framed records.
fn hello_v5() -> Message {
    let Message::Hello(mut h) = hello_v4() else {
        unreachable!()
    };
    h.dedup_window = 0;
    h.framed_records = true;
    Message::Hello(h)
}

/// The WELCOME of version 5: framed records granted.
fn welcome_v5() -> Message {
    let Message::Welcome(mut w) = welcome() else {
        unreachable!()
    };
    w.framed_records = true;
    Message::Welcome(w)
}

fn welcome_v3() -> Message {
    let Message::Welcome(mut w) = welcome() else {
        unreachable!()
    };
    w.dedup_window = 4096;
    Message::Welcome(w)
}

fn hello_with(software: Option<String>) -> Message {
    Message::Hello(Hello {
        agent: "host-01.example".into(),
        software,
        dedup_window: 0,
        framed_records: false,
        groups: vec![
            HelloGroup {
                group: "web".into(),
                generation: 2,
                last_acked: Seq(41),
                epoch: 0,
                disks: vec![
                    DiskInfo {
                        disk: "sda".into(),
                        size_bytes: 10 << 30,
                    },
                    DiskInfo {
                        disk: "sdb".into(),
                        size_bytes: 512 * 1000,
                    },
                ],
            },
            HelloGroup {
                group: "db:main".into(),
                generation: 0,
                last_acked: Seq(0),
                epoch: 0,
                disks: vec![DiskInfo {
                    disk: "vda".into(),
                    size_bytes: 1 << 40,
                }],
            },
        ],
    })
}

fn welcome() -> Message {
    Message::Welcome(Welcome {
        dedup_window: 0,
        framed_records: false,
        groups: vec![
            WelcomeGroup {
                group: "web".into(),
                generation: 2,
                status: ResumeStatus::Resume,
                durable: Seq(40),
            },
            WelcomeGroup {
                group: "db:main".into(),
                generation: 1,
                status: ResumeStatus::ResyncNeeded,
                durable: Seq(0),
            },
        ],
    })
}

fn tag_info() -> TagInfo {
    TagInfo {
        seq: Seq(44),
        kind: TagKind::AppConsistent,
        timestamp_ms: T0 + 1500,
        name: "pre-upgrade_1".into(),
    }
}

fn tag() -> Message {
    Message::Tag(Tag {
        group: "web".into(),
        generation: 2,
        tag: tag_info(),
    })
}

fn ack() -> Message {
    Message::Ack(Ack {
        group: "web".into(),
        durable: Seq(44),
    })
}

fn hashes() -> Message {
    Message::Hashes(Hashes {
        group: "web".into(),
        disk: 1,
        offset: 1 << 20,
        block_size: 65536,
        hashes: vec![0, 1, 0x0123_4567_89ab_cdef, u64::MAX],
    })
}

fn control() -> Message {
    Message::Control(Control {
        group: "web".into(),
        op: ControlOp::TagRequest,
        arg: "nightly backup ✓".into(),
    })
}

/// A CONTROL only version 2 has: the agent's report.
fn control_report() -> Message {
    Message::Control(Control {
        group: "web".into(),
        op: ControlOp::Report,
        arg: r#"{"mode":"bitmap","rpo_seconds":2.5,"dirty_regions":3}"#.into(),
    })
}

/// CONTROL ops of online verify (frame version 2, added within it).
fn control_verify_request() -> Message {
    Message::Control(Control {
        group: "web".into(),
        op: ControlOp::VerifyRequest,
        arg: r#"{"job":7,"point":1200,"deadline_secs":600,"repair":true}"#.into(),
    })
}

fn control_verify_report() -> Message {
    Message::Control(Control {
        group: "web".into(),
        op: ControlOp::VerifyReport,
        arg: r#"{"job":7,"total_bytes":67108864,"compared_bytes":1048576,"ranges":[{"disk":1,"offset":8192,"len":4096,"seq":1200,"time_ms":1764115200000}],"done":false,"not_compared_bytes":0,"repaired":false,"error":null}"#.into(),
    })
}

/// The relay's CONTROL telling the agent what the master target holds (frame version 2, added
/// within it).
fn control_target_durable() -> Message {
    Message::Control(Control {
        group: "web".into(),
        op: ControlOp::TargetDurable,
        arg: "1200".into(),
    })
}

fn error() -> Message {
    Message::Error(ErrorMsg {
        code: ErrorCode::StaleGeneration,
        message: "group web: generation 1 < 2".into(),
    })
}

fn error_unknown_code() -> Message {
    Message::Error(ErrorMsg {
        code: ErrorCode::Other(999),
        message: String::new(),
    })
}

/// The batch's header fields (the compressed bytes come from the file: zstd's output may differ
/// between zstd versions, the records must not).
fn batch_fields(compressed: Vec<u8>) -> Batch {
    Batch {
        group: "web".into(),
        generation: 2,
        first_seq: Seq(41),
        record_count: 3,
        timestamp_ms: T0,
        uncompressed_len: 3 * 16 + 1024,
        compressed,
    }
}

fn segment_header() -> SegmentHeader {
    SegmentHeader {
        segment_id: 3,
        group: "web".into(),
        generation: 2,
        first_seq: Seq(41),
        created_ms: T0 - 60_000,
    }
}

const B: u64 = BLOCK as u64;

/// The sealed segment: header, records chunk (seqs 41..=43) at B, records chunk (seq 44) at
/// 3B, tag chunk (seq 44) at 5B, footer at 6B.
fn sealed_footer() -> SegmentFooter {
    SegmentFooter {
        chunks: vec![
            ChunkSummary {
                pos: B,
                first_seq: Seq(41),
                last_seq: Seq(43),
                timestamp_ms: T0,
                kind: ChunkKind::Records,
            },
            ChunkSummary {
                pos: 3 * B,
                first_seq: Seq(44),
                last_seq: Seq(44),
                timestamp_ms: T0 + 1000,
                kind: ChunkKind::Records,
            },
            ChunkSummary {
                pos: 5 * B,
                first_seq: Seq(44),
                last_seq: Seq(44),
                timestamp_ms: T0 + 1500,
                kind: ChunkKind::Tag,
            },
        ],
        tags: vec![tag_info()],
        extents: vec![
            FooterExtent {
                disk: 0,
                kind: RecordKind::Trim,
                offset: 512,
                len: 512,
                seq: Seq(43),
                data_pos: 0,
                encoding: Encoding::Raw,
            },
            FooterExtent {
                disk: 0,
                kind: RecordKind::Data,
                offset: 1 << 20,
                len: 1024,
                seq: Seq(41),
                data_pos: 2 * B,
                encoding: Encoding::Raw,
            },
            FooterExtent {
                disk: 1,
                kind: RecordKind::Data,
                offset: 0,
                len: 512,
                seq: Seq(44),
                data_pos: 4 * B,
                encoding: Encoding::Raw,
            },
            FooterExtent {
                disk: 1,
                kind: RecordKind::Zero,
                offset: 4096,
                len: 8192,
                seq: Seq(42),
                data_pos: 0,
                encoding: Encoding::Raw,
            },
        ],
    }
}

const SEALED_FOOTER_AT: u64 = 6 * B;

// ---- what the current encoders write (used to create missing files, and to notice a layout
// change that forgot its version bump) ----

fn chunk_a() -> Vec<u8> {
    let a = data_a();
    let r = records_a(&a);
    let mut out = vec![0; records_chunk_len(&r)];
    write_records_chunk(&mut out, Seq(41), T0, 2, &r);
    out
}

/// 40 KiB of compressible bytes: two frames (32 KiB + 8 KiB) when encoded.
fn data_z() -> Vec<u8> {
    (0..40 * 1024u32)
        .map(|i| ((i / 128) % 5) as u8 + b'a')
        .collect()
}

fn records_z(z: &[u8]) -> Vec<RecordRef<'_>> {
    vec![
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 1 << 20,
            len: z.len() as u32,
            data: z,
        },
        RecordRef {
            disk: 0,
            kind: RecordKind::Zero,
            offset: 0,
            len: 4096,
            data: &[],
        },
    ]
}

/// A version 2 chunk: one zstd-encoded data record (level 3), one zero record.
fn chunk_z() -> Vec<u8> {
    let z = data_z();
    let r = records_z(&z);
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    let mut enc = Vec::new();
    assert!(encoding::encode_record(&mut c, &z, &mut enc));
    let encoded = [Some(&enc[..]), None];
    let mut out = vec![0; records_chunk_len_with(&r, &encoded)];
    write_records_chunk_with(&mut out, Seq(60), T0, 2, &r, &encoded);
    out
}

/// A framed record payload: data_z framed (level 3, checksummed frames), data_b plain, a
/// zero record.
fn records_framed() -> Vec<u8> {
    let (z, b) = (data_z(), data_b());
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_checksum(true).unwrap();
    let mut enc = Vec::new();
    assert!(encoding::encode_record(&mut c, &z, &mut enc));
    let crc = crc32c::crc32c(&enc);
    framed::encode_records_framed(&framed_records(&z, &b, Some((&enc, crc))))
}

fn framed_records<'a>(
    z: &'a [u8],
    b: &'a [u8],
    encoded: Option<(&'a [u8], u32)>,
) -> Vec<framed::FramedRecord<'a>> {
    let mut zr = records_z(z)[0];
    zr.data = &[];
    vec![
        framed::FramedRecord {
            record: zr,
            encoded,
        },
        framed::FramedRecord {
            record: RecordRef {
                disk: 1,
                kind: RecordKind::Data,
                offset: 8192,
                len: b.len() as u32,
                data: b,
            },
            encoded: None,
        },
        framed::FramedRecord {
            record: records_z(z)[1],
            encoded: None,
        },
    ]
}

fn chunk_b() -> Vec<u8> {
    let b = data_b();
    let r = records_b(&b);
    let mut out = vec![0; records_chunk_len(&r)];
    write_records_chunk(&mut out, Seq(44), T0 + 1000, 2, &r);
    out
}

fn chunk_tag() -> Vec<u8> {
    let t = tag_info();
    let mut out = vec![0; tag_chunk_len(&t)];
    write_tag_chunk(&mut out, T0 + 1500, 2, &t);
    out
}

fn sealed_segment() -> Vec<u8> {
    let mut f = segment_header().encode().to_vec();
    f.extend(chunk_a());
    f.extend(chunk_b());
    f.extend(chunk_tag());
    assert_eq!(f.len() as u64, SEALED_FOOTER_AT);
    f.extend(sealed_footer().encode(SEALED_FOOTER_AT));
    f
}

fn batch_frame_version(version: u16) -> Vec<u8> {
    let a = data_a();
    Message::Batch(Batch::build("web", 2, Seq(41), T0, &records_a(&a), 3)).to_frame_version(version)
}

/// Blocks X, Y, Z of the deduplicated payload.
fn block(v: u8) -> Vec<u8> {
    (0..BLOCK as u32).map(|i| (i as u8) ^ v).collect()
}

/// Records whose blocks repeat: [X Y] at 0, [Y X] at 1 MiB, a zero record, [Z X Z] on disk 1.
fn dedup_data() -> [Vec<u8>; 3] {
    let (x, y, z) = (block(0x11), block(0x22), block(0x33));
    [
        [x.clone(), y.clone()].concat(),
        [y, x.clone()].concat(),
        [z.clone(), x, z].concat(),
    ]
}

fn dedup_records(d: &[Vec<u8>; 3]) -> Vec<RecordRef<'_>> {
    fn data(disk: u16, offset: u64, data: &[u8]) -> RecordRef<'_> {
        RecordRef {
            disk,
            kind: RecordKind::Data,
            offset,
            len: data.len() as u32,
            data,
        }
    }
    vec![
        data(0, 0, &d[0]),
        data(0, 1 << 20, &d[1]),
        RecordRef {
            disk: 0,
            kind: RecordKind::Zero,
            offset: 8192,
            len: 4096,
            data: &[],
        },
        data(1, 4096, &d[2]),
    ]
}

/// The payload a sender writes for [`dedup_records`] with a fresh window.
fn records_dedup() -> Vec<u8> {
    let d = dedup_data();
    let mut w = dedup::DedupWindow::sender(16);
    encode_records_dedup(&dedup_records(&d), &mut w).0
}

type Make = fn() -> Vec<u8>;

/// Every vector file and how the current code writes it.
const VECTORS: &[(&str, Make)] = &[
    ("frame-hello.bin", || hello().to_frame_version(1)),
    ("frame-welcome.bin", || welcome().to_frame_version(1)),
    ("frame-batch.bin", || batch_frame_version(1)),
    ("frame-tag.bin", || tag().to_frame_version(1)),
    ("frame-ack.bin", || ack().to_frame_version(1)),
    ("frame-hashes.bin", || hashes().to_frame_version(1)),
    ("frame-control.bin", || control().to_frame_version(1)),
    ("frame-error.bin", || error().to_frame_version(1)),
    ("frame-error-unknown-code.bin", || {
        error_unknown_code().to_frame_version(1)
    }),
    ("frame-hello-v2.bin", || hello_v2().to_frame_version(2)),
    ("frame-welcome-v2.bin", || welcome().to_frame_version(2)),
    ("frame-batch-v2.bin", || batch_frame_version(2)),
    ("frame-tag-v2.bin", || tag().to_frame_version(2)),
    ("frame-ack-v2.bin", || ack().to_frame_version(2)),
    ("frame-hashes-v2.bin", || hashes().to_frame_version(2)),
    ("frame-control-v2.bin", || control().to_frame_version(2)),
    ("frame-error-v2.bin", || error().to_frame_version(2)),
    ("frame-error-unknown-code-v2.bin", || {
        error_unknown_code().to_frame_version(2)
    }),
    ("frame-control-report-v2.bin", || {
        control_report().to_frame_version(2)
    }),
    ("frame-control-verify-request-v2.bin", || {
        control_verify_request().to_frame_version(2)
    }),
    ("frame-control-verify-report-v2.bin", || {
        control_verify_report().to_frame_version(2)
    }),
    ("frame-control-target-durable-v2.bin", || {
        control_target_durable().to_frame_version(2)
    }),
    ("frame-hello-v3.bin", || hello_v3().to_frame_version(3)),
    ("frame-welcome-v3.bin", || welcome_v3().to_frame_version(3)),
    ("frame-hello-v4.bin", || hello_v4().to_frame_version(4)),
    ("frame-hello-v5.bin", || hello_v5().to_frame_version(5)),
    ("frame-welcome-v5.bin", || welcome_v5().to_frame_version(5)),
    ("records-framed-zstd.bin", records_framed),
    ("records-dedup.bin", records_dedup),
    ("records.bin", || encode_records(&records_a(&data_a()))),
    ("segment-header.bin", || segment_header().encode().to_vec()),
    ("chunk-records.bin", chunk_a),
    ("chunk-records-zstd.bin", chunk_z),
    ("chunk-tag.bin", chunk_tag),
    ("footer.bin", || sealed_footer().encode(SEALED_FOOTER_AT)),
    ("segment-sealed.bin", sealed_segment),
];

/// Layouts whose bytes the current encoder must reproduce exactly (all but zstd output).
fn byte_stable(name: &str) -> bool {
    !name.starts_with("frame-batch") && !name.ends_with("-zstd.bin")
}

// ---- the checks ----

fn decode_one_frame(bytes: &[u8]) -> Message {
    let (head, payload, used) = decode_frame(bytes).unwrap().expect("a whole frame");
    assert_eq!(used, bytes.len(), "one frame per file");
    Message::decode_version(head.version, head.kind, payload).unwrap()
}

#[test]
fn message_frames_decode_to_their_constants() {
    for (file, want) in [
        ("frame-hello.bin", hello()),
        ("frame-welcome.bin", welcome()),
        ("frame-tag.bin", tag()),
        ("frame-ack.bin", ack()),
        ("frame-hashes.bin", hashes()),
        ("frame-control.bin", control()),
        ("frame-error.bin", error()),
        ("frame-error-unknown-code.bin", error_unknown_code()),
        ("frame-hello-v2.bin", hello_v2()),
        ("frame-welcome-v2.bin", welcome()),
        ("frame-tag-v2.bin", tag()),
        ("frame-ack-v2.bin", ack()),
        ("frame-hashes-v2.bin", hashes()),
        ("frame-control-v2.bin", control()),
        ("frame-error-v2.bin", error()),
        ("frame-error-unknown-code-v2.bin", error_unknown_code()),
        ("frame-control-report-v2.bin", control_report()),
        ("frame-hello-v3.bin", hello_v3()),
        ("frame-welcome-v3.bin", welcome_v3()),
        ("frame-hello-v4.bin", hello_v4()),
        (
            "frame-control-verify-request-v2.bin",
            control_verify_request(),
        ),
        (
            "frame-control-verify-report-v2.bin",
            control_verify_report(),
        ),
        (
            "frame-control-target-durable-v2.bin",
            control_target_durable(),
        ),
    ] {
        let bytes = read(file);
        let want_version = if file.ends_with("-v4.bin") {
            4
        } else if file.ends_with("-v3.bin") {
            3
        } else if file.ends_with("-v2.bin") {
            2
        } else {
            1
        };
        assert_eq!(&bytes[4..6], &[want_version, 0], "{file}: version field");
        assert_eq!(decode_one_frame(&bytes), want, "{file}");
    }
}

#[test]
fn version_2_differs_from_version_1_only_in_the_hello() {
    // Every message but HELLO keeps its payload: only the header's version and crc change.
    for kind in [
        "welcome",
        "tag",
        "ack",
        "hashes",
        "control",
        "error",
        "error-unknown-code",
    ] {
        let v1 = read(&format!("frame-{kind}.bin"));
        let v2 = read(&format!("frame-{kind}-v2.bin"));
        assert_eq!(v1[24..], v2[24..], "{kind}: payload");
        assert_eq!(v1[6..20], v2[6..20], "{kind}: header fields");
    }
    let v1 = read("frame-hello.bin");
    let v2 = read("frame-hello-v2.bin");
    assert_ne!(v1[24..], v2[24..]);
    // The report CONTROL is version 2's: the same bytes under a version 1 header are refused.
    let report = read("frame-control-report-v2.bin");
    let Message::Control(c) = decode_one_frame(&report) else {
        panic!("not a CONTROL")
    };
    let r = agent_report::AgentReport::parse(&c.arg).unwrap();
    assert_eq!(r.mode, agent_report::AgentMode::Bitmap);
    assert!(Message::decode_version(1, FrameKind::Control, &report[24..]).is_err());
    // So are verify's request and report; their args parse.
    for (file, want) in [
        (
            "frame-control-verify-request-v2.bin",
            ControlOp::VerifyRequest,
        ),
        (
            "frame-control-verify-report-v2.bin",
            ControlOp::VerifyReport,
        ),
    ] {
        let bytes = read(file);
        let Message::Control(c) = decode_one_frame(&bytes) else {
            panic!("{file}: not a CONTROL")
        };
        assert_eq!(c.op, want, "{file}");
        assert!(Message::decode_version(1, FrameKind::Control, &bytes[24..]).is_err());
        if want == ControlOp::VerifyRequest {
            assert_eq!(
                verify::VerifyRequest::parse(&c.arg).unwrap().point,
                Some(1200)
            );
        } else {
            let r = verify::VerifyReport::parse(&c.arg).unwrap();
            assert_eq!(r.ranges[0].offset, 8192);
        }
    }
}

#[test]
fn batch_frame_decodes_to_its_records() {
    for file in ["frame-batch.bin", "frame-batch-v2.bin"] {
        let bytes = read(file);
        let Message::Batch(b) = decode_one_frame(&bytes) else {
            panic!("{file} is not a BATCH");
        };
        assert_eq!(b, batch_fields(b.compressed.clone()));
        assert_eq!(b.last_seq(), Seq(43));
        let a = data_a();
        let recs = b.decode_records().unwrap();
        assert_eq!(recs.iter().collect::<Vec<_>>(), records_a(&a));
        assert_eq!(recs.raw(), &read("records.bin")[..]);
    }
}

#[test]
fn deduplicated_records_resolve_to_their_constants() {
    let raw = read("records-dedup.bin");
    // Record 0 plain (X, Y: blocks 0 and 1), record 1 two references (1, 0), the zero record,
    // record 3 literal Z (block 2), then references 0 and 2.
    assert_eq!(raw[3], 0, "record 0 is plain");
    let r1 = 16 + 8192;
    assert_eq!(raw[r1 + 3], 1, "record 1 is deduplicated");
    let entry = |n: u64, b: &[u8]| {
        [
            &[1u8][..],
            &n.to_le_bytes(),
            &hash::block_hash(b).to_le_bytes(),
        ]
        .concat()
    };
    let want = [entry(1, &block(0x22)), entry(0, &block(0x11))].concat();
    assert_eq!(&raw[r1 + 16..r1 + 16 + 34], &want[..]);
    let d = dedup_data();
    let mut w = dedup::DedupWindow::receiver(16);
    let recs = parse_records_dedup(&raw, 4, &mut w).unwrap();
    assert_eq!(recs.iter().collect::<Vec<_>>(), dedup_records(&d));
    assert_eq!(w.next(), 3, "X, Y and Z went into the window");
    // Without a window, and with one too small to hold what record 3 names, it is refused.
    let e = parse_records(raw.clone(), 4).unwrap_err().to_string();
    assert!(e.contains("no dedup window"), "{e}");
    let mut small = dedup::DedupWindow::receiver(1);
    let e = parse_records_dedup(&raw, 4, &mut small)
        .unwrap_err()
        .to_string();
    assert!(e.contains("window holds"), "{e}");
}

#[test]
fn version_3_adds_the_dedup_window_to_hello_and_welcome_only() {
    let (v2, v3) = (read("frame-hello-v2.bin"), read("frame-hello-v3.bin"));
    assert_ne!(v2[24..], v3[24..]);
    let (v2, v3) = (read("frame-welcome-v2.bin"), read("frame-welcome-v3.bin"));
    // The same groups, then the u32 window.
    assert_eq!(v2[24..], v3[24..v3.len() - 4]);
    assert_eq!(v3[v3.len() - 4..], 4096u32.to_le_bytes());
    // A version 2 reader has no such field: the same bytes are refused as trailing.
    assert!(Message::decode_version(2, FrameKind::Welcome, &v3[24..]).is_err());
}

#[test]
fn version_4_adds_each_groups_epoch_to_hello_only() {
    let (v3, v4) = (read("frame-hello-v3.bin"), read("frame-hello-v4.bin"));
    // Two groups: eight bytes each, right after each group's last_acked.
    assert_eq!(v4.len(), v3.len() + 16);
    let Message::Hello(h) = decode_one_frame(&v4) else {
        panic!("not a HELLO")
    };
    assert_eq!(
        h.groups.iter().map(|g| g.epoch).collect::<Vec<_>>(),
        [5, 1 << 40]
    );
    // A version 3 HELLO means epoch 0 for every group.
    let Message::Hello(h) = decode_one_frame(&v3) else {
        panic!("not a HELLO")
    };
    assert!(h.groups.iter().all(|g| g.epoch == 0));
    // A version 3 reader has no such field: the same bytes are not a version 3 HELLO.
    assert!(Message::decode_version(3, FrameKind::Hello, &v4[24..]).is_err());
}

#[test]
fn version_5_adds_a_flags_byte_to_hello_and_welcome_only() {
    let (v4, v5) = (read("frame-hello-v4.bin"), read("frame-hello-v5.bin"));
    // Version 4's HELLO asked for a dedup window (a relay's); version 5's asks for framed
    // records instead (an agent's): one flags byte after the window.
    assert_eq!(v5.len(), v4.len() + 1);
    let Message::Hello(h) = decode_one_frame(&v5) else {
        panic!("not a HELLO")
    };
    assert_eq!(Message::Hello(h.clone()), hello_v5());
    let Message::Hello(h4) = decode_one_frame(&v4) else {
        panic!("not a HELLO")
    };
    assert!(!h4.framed_records, "older HELLOs never ask");
    let (v3, v5) = (read("frame-welcome-v3.bin"), read("frame-welcome-v5.bin"));
    // The same groups, the u32 window (0 here), then the flags.
    assert_eq!(v3[24..v3.len() - 4], v5[24..v5.len() - 5]);
    assert_eq!(v5[v5.len() - 5..], [0, 0, 0, 0, 1]);
    assert_eq!(decode_one_frame(&v5), welcome_v5());
    assert!(Message::decode_version(4, FrameKind::Welcome, &v5[24..]).is_err());
}

#[test]
fn framed_records_decode_to_their_constants() {
    let (z, b) = (data_z(), data_b());
    let recs = framed::parse_records_framed(read("records-framed-zstd.bin"), 3, Seq(70)).unwrap();
    let got: Vec<_> = recs.iter().collect();
    let (enc, crc) = got[0].encoded.expect("the first record is framed");
    assert_eq!(got, framed_records(&z, &b, Some((enc, crc))));
    // Its table and frames are the journal's encoding of data_z.
    let mut region = enc.to_vec();
    region.resize(enc.len().div_ceil(BLOCK) * BLOCK, 0);
    encoding::verify_encoded(z.len() as u32, crc, &region).unwrap();
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    let mut out = vec![0; z.len()];
    encoding::decode_record(&mut d, z.len() as u32, crc, &region, &mut out).unwrap();
    assert_eq!(out, z);
    // Outside a session granted framed records the same payload is refused.
    let e = parse_records(read("records-framed-zstd.bin"), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not granted framed records"), "{e}");
}

#[test]
fn raw_records_decode_to_their_constants() {
    let a = data_a();
    let recs = parse_records(read("records.bin"), 3).unwrap();
    assert_eq!(recs.iter().collect::<Vec<_>>(), records_a(&a));
}

#[test]
fn segment_header_decodes_to_its_constant() {
    let b = read("segment-header.bin");
    assert_eq!(b.len(), BLOCK);
    assert_eq!(SegmentHeader::decode(&b), Ok(segment_header()));
}

fn check_records_chunk(chunk: &[u8], first: u64, ts: u64, want: &[RecordRef<'_>]) -> ChunkHeader {
    let p = peek_chunk(chunk).unwrap();
    assert_eq!(p.kind, ChunkKind::Records);
    let h = decode_chunk_header(&chunk[..p.header_len as usize]).unwrap();
    assert_eq!(h.first_seq, Seq(first));
    assert_eq!(h.last_seq, Seq(first + want.len() as u64 - 1));
    assert_eq!((h.timestamp_ms, h.generation), (ts, 2));
    assert_eq!(h.total_len, chunk.len() as u64);
    assert_eq!(h.records.len(), want.len());
    for (i, (rec, w)) in h.records.iter().zip(want).enumerate() {
        assert_eq!(rec.seq, Seq(first + i as u64));
        assert_eq!(
            (rec.disk, rec.kind, rec.offset, rec.len),
            (w.disk, w.kind, w.offset, w.len)
        );
        if rec.kind == RecordKind::Data {
            let at = rec.data_pos as usize;
            assert_eq!(&chunk[at..at + rec.len as usize], w.data);
            verify_record_data(rec, &chunk[at..]).unwrap();
        }
    }
    h
}

#[test]
fn records_chunk_decodes_to_its_constants() {
    let a = data_a();
    let chunk = read("chunk-records.bin");
    let h = check_records_chunk(&chunk, 41, T0, &records_a(&a));
    assert_eq!(h.header_len_padded, B);
    assert_eq!(h.records[0].data_pos, B);
    assert_eq!(chunk.len() as u64, 2 * B);
}

#[test]
fn encoded_chunk_decodes_to_its_constants() {
    let z = data_z();
    let chunk = read("chunk-records-zstd.bin");
    assert_eq!(
        u16::from_le_bytes([chunk[4], chunk[5]]),
        CHUNK_VERSION_ENCODED
    );
    let p = peek_chunk(&chunk).unwrap();
    let h = decode_chunk_header(&chunk[..p.header_len as usize]).unwrap();
    let want = records_z(&z);
    assert_eq!(h.records.len(), 2);
    assert_eq!(h.total_len, chunk.len() as u64);
    // Header block + the encoded record in one block, not the 10 its raw bytes take.
    assert_eq!(chunk.len(), 2 * BLOCK);
    let r = &h.records[0];
    assert_eq!(
        (r.kind, r.offset, r.len, r.encoding),
        (
            RecordKind::Data,
            want[0].offset,
            want[0].len,
            Encoding::Zstd
        )
    );
    assert_eq!(h.records[1].encoding, Encoding::Raw);
    verify_chunk_data(&h, &chunk).unwrap();
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    let mut out = vec![0; r.len as usize];
    let region = &chunk[r.data_pos as usize..];
    encoding::decode_record(&mut d, r.len, r.data_crc, region, &mut out).unwrap();
    assert_eq!(out, z);
}

#[test]
fn tag_chunk_decodes_to_its_constant() {
    let h = decode_chunk_header(&read("chunk-tag.bin")).unwrap();
    assert_eq!(h.kind, ChunkKind::Tag);
    assert_eq!(h.tag, Some(tag_info()));
    assert_eq!(
        (h.first_seq, h.last_seq, h.timestamp_ms),
        (Seq(44), Seq(44), T0 + 1500)
    );
}

fn read_footer(file: &[u8], file_len: u64, base: u64) -> SegmentFooter {
    let t = SegmentFooter::decode_trailer(&file[file.len() - TRAILER_LEN..], file_len).unwrap();
    let start = (t.footer_offset - base) as usize;
    SegmentFooter::decode_body(&file[start..start + t.body_len as usize], &t).unwrap()
}

#[test]
fn footer_decodes_to_its_constant() {
    let f = read("footer.bin");
    let file_len = SEALED_FOOTER_AT + f.len() as u64;
    assert_eq!(read_footer(&f, file_len, SEALED_FOOTER_AT), sealed_footer());
}

#[test]
fn sealed_segment_reads_both_ways() {
    let seg = read("segment-sealed.bin");
    assert_eq!(seg.len() % BLOCK, 0);
    assert_eq!(SegmentHeader::decode(&seg), Ok(segment_header()));
    // The fast way: trailer, then footer.
    let footer = read_footer(&seg, seg.len() as u64, 0);
    assert_eq!(footer, sealed_footer());
    // The recovery way: walk the chunks and rebuild the same index.
    let mut pos = B;
    let mut chunks = Vec::new();
    let mut extents = Vec::new();
    let mut tags = Vec::new();
    while pos < SEALED_FOOTER_AT {
        let h = decode_chunk_header(&seg[pos as usize..]).unwrap();
        for rec in &h.records {
            let at = (pos + rec.data_pos) as usize;
            verify_record_data(rec, &seg[at..]).unwrap();
            extents.push(rec.extent(pos));
        }
        tags.extend(h.tag.clone());
        chunks.push(h.summary(pos));
        pos += h.total_len;
    }
    assert_eq!(pos, SEALED_FOOTER_AT);
    let mut rebuilt = SegmentFooter {
        chunks,
        tags,
        extents,
    };
    rebuilt.sort_extents();
    assert_eq!(rebuilt, footer);
    // The data the footer points at.
    let e = footer.extents.iter().find(|e| e.seq == Seq(44)).unwrap();
    assert_eq!(&seg[e.data_pos as usize..][..512], &data_b()[..]);
}

#[test]
fn current_encoders_still_write_every_vector() {
    // If this fails, a layout changed: bump its version, keep reading the old files, and add
    // new files for the new version instead of rewriting these. The version 1 frame encoder
    // must stay too: the target answers version 1 agents in it.
    for (name, make) in VECTORS {
        if byte_stable(name) {
            assert!(
                read(name) == make(),
                "{name}: the encoder no longer writes these bytes"
            );
        }
    }
}

#[test]
fn every_vector_file_is_listed() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    let mut listed: Vec<String> = VECTORS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed);
}

/// Writes the vector files that do not exist yet; never touches an existing one.
#[test]
#[ignore = "writes files; run by hand when adding a vector"]
fn write_missing_vectors() {
    std::fs::create_dir_all(dir()).unwrap();
    for (name, make) in VECTORS {
        let p = dir().join(name);
        if !p.exists() {
            std::fs::write(&p, make()).unwrap();
            eprintln!("wrote {}", p.display());
        }
    }
}
