//! The zero-copy batch builders write exactly the BATCH layout this crate decodes, and the same
//! uncompressed records as the reference encoder ([`Batch::build`]).

use rewind_formats::batch::{BatchBuilder, Compression, PartsBuilder};
use rewind_formats::{decode_frame, Batch, FrameKind, Message, RecordKind, RecordRef, Seq};

fn decode(frame: &[u8]) -> Batch {
    let (head, payload, used) = decode_frame(frame).unwrap().unwrap();
    assert_eq!(head.kind, FrameKind::Batch);
    assert_eq!(used, frame.len());
    match Message::decode(head.kind, payload).unwrap() {
        Message::Batch(b) => b,
        other => panic!("not a batch: {other:?}"),
    }
}

#[test]
fn frames_decode_with_rewind_formats() {
    let data_a = vec![0xabu8; 4096];
    let data_b: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    // Crosses several 128 KiB zstd blocks in store mode.
    let data_c: Vec<u8> = (0..(300u32 << 10)).map(|i| (i % 251) as u8).collect();
    let records = [
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 8192,
            len: 4096,
            data: &data_a,
        },
        RecordRef {
            disk: 1,
            kind: RecordKind::Zero,
            offset: 1 << 20,
            len: 65536,
            data: &[],
        },
        RecordRef {
            disk: 1,
            kind: RecordKind::Data,
            offset: 512,
            len: 8192,
            data: &data_b,
        },
        RecordRef {
            disk: 2,
            kind: RecordKind::Data,
            offset: 1 << 30,
            len: 300 << 10,
            data: &data_c,
        },
    ];
    for compression in [
        Compression::Zstd(1),
        Compression::Zstd(-3),
        Compression::Store,
    ] {
        let mut b = BatchBuilder::new("g1", 3, compression).unwrap();
        for r in &records {
            b.push(r);
        }
        assert_eq!(b.record_count(), 4);
        let frame = b.finish(Vec::new(), Seq(10), 1234).unwrap();
        assert!(b.is_empty());

        let batch = decode(&frame);
        assert_eq!(batch.group, "g1");
        assert_eq!(batch.generation, 3);
        assert_eq!(batch.first_seq, Seq(10));
        assert_eq!(batch.record_count, 4);
        assert_eq!(batch.timestamp_ms, 1234);
        assert_eq!(batch.last_seq(), Seq(13));
        let decoded = batch.decode_records().unwrap();
        let got: Vec<RecordRef<'_>> = decoded.iter().collect();
        assert_eq!(got, records, "{compression}");

        // Same uncompressed payload as the reference encoder.
        let reference = Batch::build("g1", 3, Seq(10), 1234, &records, 1);
        assert_eq!(reference.uncompressed_len, batch.uncompressed_len);
        let plain = zstd::bulk::decompress(&reference.compressed, 1 << 20).unwrap();
        let ours = zstd::bulk::decompress(&batch.compressed, 1 << 20).unwrap();
        assert_eq!(plain, ours);

        // The builder is reusable and reuses the buffer it is given.
        for n in 1..=3 {
            for r in &records[..n] {
                b.push(r);
            }
            let f = b.finish(frame.clone(), Seq(14), 1235).unwrap();
            let batch = decode(&f);
            assert_eq!(batch.record_count, n as u32);
            let d = batch.decode_records().unwrap();
            assert_eq!(d.iter().collect::<Vec<_>>(), records[..n]);
        }
    }
}

#[test]
fn store_blocks_at_exact_boundaries() {
    // Payloads that end exactly on 128 KiB block boundaries: zero records are 16 bytes each;
    // 31 records of 512 bytes plus one of 224 or 480 sectors make 32 headers + 255 or 511
    // sectors = 1 or 2 blocks.
    let sector = vec![1u8; 512];
    let big = vec![2u8; 480 * 512];
    let zero = |i: u64| RecordRef {
        disk: 0,
        kind: RecordKind::Zero,
        offset: i * 512,
        len: 512,
        data: &[],
    };
    let data = |i: u64, d: &'static [u8]| RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: i << 20,
        len: d.len() as u32,
        data: d,
    };
    let sector: &'static [u8] = Box::leak(sector.into_boxed_slice());
    let big: &'static [u8] = Box::leak(big.into_boxed_slice());
    let cases: Vec<Vec<RecordRef<'static>>> = vec![
        (0..8192).map(zero).collect(),
        (0..16384).map(zero).collect(),
        (0..31)
            .map(|i| data(i, sector))
            .chain([data(99, &big[..224 * 512])])
            .collect(),
        (0..31)
            .map(|i| data(i, sector))
            .chain([data(99, big)])
            .collect(),
        (0..31)
            .map(|i| data(i, sector))
            .chain([data(99, big), zero(7)])
            .collect(),
    ];
    for records in cases {
        let mut b = BatchBuilder::new("g", 1, Compression::Store).unwrap();
        for r in &records {
            b.push(r);
        }
        let batch = decode(&b.finish(Vec::new(), Seq(1), 0).unwrap());
        let d = batch.decode_records().unwrap();
        assert_eq!(d.iter().collect::<Vec<_>>(), records);
    }
}

#[test]
fn parts_frames_equal_stored_frames() {
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let small: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
    let cases: Vec<Vec<RecordRef<'_>>> = vec![
        vec![RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 0,
            len: 1 << 20,
            data: &big,
        }],
        (0..1000)
            .map(|i| RecordRef {
                disk: (i % 3) as u16,
                kind: RecordKind::Data,
                offset: i * 4096,
                len: 4096,
                data: &small,
            })
            .collect(),
        (0..8192)
            .map(|i| RecordRef {
                disk: 0,
                kind: RecordKind::Zero,
                offset: i * 512,
                len: 512,
                data: &[],
            })
            .collect(),
    ];
    let mut pb = PartsBuilder::new("grp", 7);
    let mut sb = BatchBuilder::new("grp", 7, Compression::Store).unwrap();
    for records in &cases {
        for r in records {
            pb.push(r);
            sb.push(r);
        }
        assert_eq!(pb.record_count(), records.len() as u32);
        let parts = pb.finish(Seq(5), 99);
        let stored = sb.finish(Vec::new(), Seq(5), 99).unwrap();
        assert_eq!(parts.len(), stored.len());
        assert_eq!(parts.to_vec(), stored);
        assert!(pb.is_empty());
        let d = decode(&parts.to_vec()).decode_records().unwrap();
        assert_eq!(d.iter().collect::<Vec<_>>(), *records);
    }
}

#[test]
fn compression_names() {
    assert_eq!("store".parse::<Compression>().unwrap(), Compression::Store);
    assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd(1));
    assert_eq!(
        "zstd:-5".parse::<Compression>().unwrap(),
        Compression::Zstd(-5)
    );
    assert!("lz4".parse::<Compression>().is_err());
    assert_eq!(Compression::Zstd(3).to_string(), "zstd:3");
}

#[test]
fn a_builder_switched_between_compressions_writes_what_a_fresh_one_does() {
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 7) as u8).collect();
    let records = [
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 0,
            len: 65536,
            data: &data,
        },
        RecordRef {
            disk: 1,
            kind: RecordKind::Trim,
            offset: 4096,
            len: 512,
            data: &[],
        },
    ];
    let mut b = BatchBuilder::new("g", 2, Compression::Store).unwrap();
    for c in [
        Compression::Zstd(1),
        Compression::Zstd(3),
        Compression::Store,
        Compression::Zstd(-1),
        Compression::Zstd(0),
    ] {
        b.set_compression(c).unwrap();
        let mut fresh = BatchBuilder::new("g", 2, c).unwrap();
        for r in &records {
            b.push(r);
            fresh.push(r);
        }
        let frame = b.finish(Vec::new(), Seq(3), 77).unwrap();
        assert_eq!(frame, fresh.finish(Vec::new(), Seq(3), 77).unwrap(), "{c}");
        let batch = decode(&frame);
        // What a sender reports as the compressed size.
        assert_eq!(frame.len() - b.prefix_len(), batch.compressed.len());
        if let Compression::Zstd(level) = c {
            // Byte for byte what the reference encoder sends at that level.
            let reference = Batch::build("g", 2, Seq(3), 77, &records, level);
            assert_eq!(batch, reference, "{c}");
        }
    }
}
