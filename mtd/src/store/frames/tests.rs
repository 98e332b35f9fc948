//! The encoded journal end to end inside the crate: batches through a session's feed (which
//! compresses), the writer, the index, views reading points back byte for byte (pieces that
//! start inside records, straddle frames and records), and a read-only load of the same data
//! directory (footers of sealed segments and the scan of the open one), against a byte model.

use std::sync::Arc;
use std::time::Duration;

use rewind_formats::message::Batch;
use rewind_formats::records::{RecordKind, RecordRef};
use rewind_formats::Seq;

use super::*;
use crate::server::ingest::Feed;
use crate::server::testing::{batch_ref, group, runtime, DISK};
use crate::store::compression::JournalCompression;
use crate::store::index::Source;
use crate::store::points::PointSpec;
use crate::store::quota::Quotas;
use crate::store::writer::WriterConfig;
use crate::store::{EngineKind, Store, StoreOptions};
use crate::views::view::View;

const K: usize = 1024;

fn compressible(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 97 % 11) as u8))
        .collect()
}

/// One record: `data` at `offset`, or zeroes (`None`, a zero record of `len`).
struct Rec {
    offset: usize,
    data: Option<Vec<u8>>,
    len: usize,
}

fn data(offset: usize, data: Vec<u8>) -> Rec {
    Rec {
        offset,
        len: data.len(),
        data: Some(data),
    }
}

/// Batches of records, as a session sends them; each batch one point to check.
fn batches() -> Vec<Vec<Rec>> {
    vec![
        vec![
            data(0, compressible(1, 256 * K)),
            data(300 * K, compressible(2, 48 * K)),
            data(512 * K, rewind_formats::testing::random_bytes(64 * K, 3)),
            Rec {
                offset: 600 * K,
                data: None,
                len: 8 * K,
            },
        ],
        // Inside the first record, across its frame boundary at 128 KiB; and a small one.
        vec![
            data(100 * K, compressible(4, 40 * K)),
            data(301 * K, compressible(5, 512)),
        ],
        // Across the end of the first record and most of the second.
        vec![data(200 * K, compressible(6, 140 * K))],
        // Zeroes over part of a compressed record, then compressible over the random one.
        vec![
            Rec {
                offset: 8 * K,
                data: None,
                len: 16 * K,
            },
            data(520 * K, compressible(7, 200 * K)),
        ],
    ]
}

fn store_with(dir: &std::path::Path, compression: JournalCompression) -> Arc<Store> {
    let opts = StoreOptions {
        engine: EngineKind::Sync,
        merge_interval: Duration::from_secs(3600),
        // Small segments: some points are in sealed segments (footers), some in the open one.
        writer: WriterConfig {
            segment_size: 24 * K as u64,
            prealloc_step: 24 * K as u64,
            ..WriterConfig::default()
        },
        journal_compression: compression,
        ..StoreOptions::default()
    };
    Store::open(dir, opts).unwrap()
}

/// Sends every batch; returns the model image after each (index i: as of batch i's last seq)
/// and those seqs.
fn send_all(store: &Arc<Store>) -> Vec<(Seq, Vec<u8>)> {
    let (g, generation) =
        crate::server::admission::hello_group(store, &group("g", 1, &["sda"]), "a").unwrap();
    let mut f = Feed {
        group: g,
        generation,
        next_seq: Seq(1),
        disk_sizes: vec![DISK],
        dedup: None,
        compressor: store.journal_compression().compressor(),
    };
    let rt = runtime();
    let mut image = vec![0u8; DISK as usize];
    let mut points = Vec::new();
    for recs in batches() {
        let refs: Vec<RecordRef<'_>> = recs
            .iter()
            .map(|r| RecordRef {
                disk: 0,
                kind: if r.data.is_some() {
                    RecordKind::Data
                } else {
                    RecordKind::Zero
                },
                offset: r.offset as u64,
                len: r.len as u32,
                data: r.data.as_deref().unwrap_or(&[]),
            })
            .collect();
        let b = Batch::build("g", generation, f.next_seq, 1_000, &refs, 1);
        rt.block_on(f.batch(store, &batch_ref(&b), &Quotas::default()))
            .unwrap();
        for r in &recs {
            match &r.data {
                Some(d) => image[r.offset..r.offset + r.len].copy_from_slice(d),
                None => image[r.offset..r.offset + r.len].fill(0),
            }
        }
        points.push((Seq(f.next_seq.0 - 1), image.clone()));
    }
    rt.block_on(f.group.drained());
    points
}

/// Every point reads back equal: whole, in 4 KiB reads, and in reads that straddle frames
/// (32 KiB), records and pieces.
fn check_points(store: &Store, points: &[(Seq, Vec<u8>)]) {
    for (seq, want) in points {
        let v = View::open(store, "g", "sda", &PointSpec::Seq(*seq)).unwrap();
        let mut all = vec![0xAA; DISK as usize];
        v.read_at(&mut all, 0).unwrap();
        assert!(all == *want, "seq {seq}: the whole disk differs");
        for (off, len) in [
            (0, 4 * K),
            (124 * K, 8 * K),
            (127 * K + 512, 3 * K),
            (96 * K, 64 * K + 512),
            (250 * K, 60 * K),
            (299 * K, 4 * K),
            (330 * K, 20 * K),
            (510 * K, 100 * K),
            (4 * K, 24 * K),
        ] {
            let mut b = vec![0x55; len];
            v.read_at(&mut b, off as u64).unwrap();
            assert!(b == want[off..off + len], "seq {seq}: {len} bytes at {off}");
        }
        for i in 0..64 {
            let off = (i * 37 * 4 * K) % (DISK as usize - 4 * K);
            let mut b = vec![0; 4 * K];
            v.read_at(&mut b, off as u64).unwrap();
            assert!(b == want[off..off + 4 * K], "seq {seq}: 4 KiB at {off}");
        }
    }
}

#[test]
fn compressed_points_read_back_exactly_and_cost_less_disk() {
    let on = tempfile::tempdir().unwrap();
    let off = tempfile::tempdir().unwrap();
    let store = store_with(on.path(), JournalCompression::default());
    let points = send_all(&store);
    let raw = store_with(off.path(), JournalCompression::Off);
    assert_eq!(send_all(&raw), points);

    let g = store.group("g").unwrap();
    let (stored, plain) = (
        g.snapshot().journal_bytes,
        raw.group("g").unwrap().snapshot().journal_bytes,
    );
    assert!(
        stored * 3 < plain,
        "compressed journal {stored} bytes vs {plain} raw"
    );
    // Plain bytes are the same in both; only what they take differs.
    let plain_bytes = |s: &Store| {
        let st = s.group("g").unwrap();
        let st = st.state.read().unwrap();
        (st.journal_plain_bytes(), st.journal_bytes())
    };
    let ((p_on, j_on), (p_off, j_off)) = (plain_bytes(&store), plain_bytes(&raw));
    assert_eq!(p_on, p_off);
    let sent = (256 + 48 + 64 + 40 + 140 + 200) * K + 512;
    assert_eq!(p_on, sent as u64, "the data records of every batch");
    assert!(j_on < p_on / 3 && j_off > p_off, "{p_on} {j_on} {j_off}");
    // The accounting is the files: a sealed segment's file is as long as counted (the open
    // one is preallocated ahead, 1 MiB at least, in both stores).
    let journal = crate::store::group::journal_dir(&g.dir);
    for s in g.snapshot().segments.values().filter(|s| s.sealed) {
        let path = journal.join(crate::store::segment_file::segment_file_name(s.id));
        assert_eq!(std::fs::metadata(path).unwrap().len(), s.len_bytes);
    }
    let segments = g.snapshot().segments;
    assert!(
        segments.values().filter(|s| s.sealed).count() >= 1 && segments.len() >= 2,
        "sealed and open segments both hold points: {:?}",
        segments
            .values()
            .map(|s| (s.len_bytes, s.sealed))
            .collect::<Vec<_>>()
    );

    check_points(&store, &points);
    check_points(&raw, &points);
    // Again: now through the frame cache.
    assert!(g.frames.len() > 0, "frames were cached");
    assert!(g.frames.tables_len() > 0, "tables were cached");
    check_points(&store, &points);

    // What a restart loads: sealed footers and the open segment's scan.
    let again = Store::open_readonly(on.path()).unwrap();
    assert_eq!(
        plain_bytes(&again),
        (p_on, j_on),
        "counted alike from footers and scans"
    );
    check_points(&again, &points);
}

#[test]
fn a_read_of_a_damaged_frame_is_an_error_not_wrong_bytes() {
    let on = tempfile::tempdir().unwrap();
    let store = store_with(on.path(), JournalCompression::default());
    let points = send_all(&store);
    let (seq, _) = points[0];
    let v = View::open(&store, "g", "sda", &PointSpec::Seq(seq)).unwrap();
    let plan = v.plan(0, 4096).unwrap().unwrap();
    let Source::Encoded {
        segment_id,
        data_pos,
        ..
    } = plan.pieces[0].source
    else {
        panic!("seq 1's first record is encoded: {:?}", plan.pieces[0]);
    };
    // Flip a byte inside its first frame (past the 8-frame table), behind the cache's back.
    let path = crate::store::group::journal_dir(&store.group("g").unwrap().dir)
        .join(crate::store::segment_file::segment_file_name(segment_id));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, data_pos + 40).unwrap();
    b[0] ^= 0x5a;
    file.write_all_at(&b, data_pos + 40).unwrap();
    store.group("g").unwrap().frames.forget_all();
    let mut out = vec![0u8; 4096];
    let e = v.read_at(&mut out, 0).unwrap_err().to_string();
    assert!(e.contains("encoded journal record"), "{e}");
}

#[test]
fn tables_outlive_frame_churn_but_not_a_merge() {
    let c = FrameCache::new(2, 4);
    let generation = c.generation();
    c.put_table(generation, (1, 0), vec![10, 20].into());
    for i in 0..10 {
        c.put(generation, (1, 0, i), vec![0u8; 8].into());
    }
    assert_eq!(c.len(), 2, "the frame LRU stays at its size");
    assert_eq!(
        c.get_table((1, 0)).as_deref(),
        Some(&[10u32, 20][..]),
        "frames do not evict tables"
    );
    c.forget_all();
    assert_eq!((c.len(), c.tables_len()), (0, 0));
    // A read planned before the merge must not cache a table of a segment that may be gone.
    c.put_table(generation, (1, 0), vec![10, 20].into());
    assert_eq!(c.tables_len(), 0);
}

#[test]
fn tables_of_applied_records_are_cached_before_any_read() {
    let on = tempfile::tempdir().unwrap();
    let store = store_with(on.path(), JournalCompression::default());
    let points = send_all(&store);
    let g = store.group("g").unwrap();
    assert_eq!(g.frames.len(), 0, "nothing read yet");
    assert!(g.frames.tables_len() > 0, "the writer cached the tables");

    // Zero seq 1's first record's table on disk, behind the cache's back: a read still finds
    // its frames (through the table the writer cached), until the cache is emptied.
    let (seq, want) = &points[0];
    let v = View::open(&store, "g", "sda", &PointSpec::Seq(*seq)).unwrap();
    let plan = v.plan(0, 4096).unwrap().unwrap();
    let Source::Encoded {
        segment_id,
        data_pos,
        len,
        ..
    } = plan.pieces[0].source
    else {
        panic!("seq 1's first record is encoded: {:?}", plan.pieces[0]);
    };
    let path = crate::store::group::journal_dir(&g.dir)
        .join(crate::store::segment_file::segment_file_name(segment_id));
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let table = table_len(len);
    file.write_all_at(&vec![0u8; table], data_pos).unwrap();
    let mut out = vec![0u8; 4096];
    v.read_at(&mut out, 0).unwrap();
    assert!(out == want[..4096], "read through the cached table");
    g.frames.forget_all();
    let e = v.read_at(&mut out, 0).unwrap_err().to_string();
    assert!(e.contains("encoded journal record"), "{e}");
}
