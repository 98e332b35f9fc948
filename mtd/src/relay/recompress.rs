//! Recompression upstream (`--recompress-level N`): the relay has the CPU the protected host
//! should not spend. An agent compresses its batches fast (zstd level 1 by default); the relay
//! decompresses each batch it forwards, checks its records, and compresses them again at a
//! higher level, keeping the smaller of the two. The cache keeps the agent's frame as it came,
//! so a crash or a change of level never touches what was acknowledged.
//!
//! On the same pass a data record whose bytes are all zero is sent as a zero record of the same
//! range and seq: it reads the same, costs the WAN nothing, and the target stores no zeros for
//! it. (A record is one seq, so only whole records can change kind; zero blocks inside a record
//! with data stay data, which zstd squeezes to almost nothing anyway.)
//!
//! With a dedup window (`--dedup-window`, granted by the target's WELCOME), every batch is
//! encoded against the session's window: a 4 KiB block the relay sent within the window goes
//! as a 17-byte reference (see `rewind_formats::dedup`). A batch with a reference (or an elided
//! zero record) is sent re-encoded, even when not smaller, since the target's window follows
//! what it receives; one that nothing changed goes as the agent's frame unless a level is set.

use anyhow::{Context, Result};
use rewind_formats::dedup::DedupWindow;
use rewind_formats::frame::FRAME_HEADER_LEN;
use rewind_formats::message::{Batch, BatchRef, Message};
use rewind_formats::records::{
    encode_records, encode_records_dedup_if_any, DedupStats, RecordKind, RecordRef,
};

/// zstd level for batches re-encoded for deduplication when `--recompress-level` is 0.
const DEDUP_LEVEL: i32 = 3;

/// What the relay does to batches on their way upstream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Optimise {
    /// zstd level to compress again at (0: keep the agent's frame, unless deduplicating).
    pub(crate) level: i32,
    /// Dedup window to ask the target for, in blocks (0: none).
    pub(crate) dedup_window: u32,
}

/// The BATCH `frame` encoded against the session's sender `window` (and zero records elided),
/// compressed at `level` (or [`DEDUP_LEVEL`]); what deduplication did. A batch that neither
/// deduplication nor zero elision changed goes as the agent's frame when no level is asked
/// for: the target's window takes the same blocks from either, and zstd is most of the
/// relay's CPU.
pub(crate) fn dedup_frame(
    frame: Vec<u8>,
    level: i32,
    window: &mut DedupWindow,
) -> Result<(Vec<u8>, DedupStats)> {
    let b = BatchRef::decode(&frame[FRAME_HEADER_LEN..]).context("a cached BATCH")?;
    let records = b
        .decode_records()
        .with_context(|| format!("the records of cached batch {}", b.first_seq))?;
    let refs: Vec<RecordRef<'_>> = records.iter().map(elide_zeros).collect();
    let elided = refs
        .iter()
        .zip(records.iter())
        .any(|(a, r)| a.kind != r.kind);
    let (raw, stats) = encode_records_dedup_if_any(&refs, window);
    if raw.is_none() && !elided && level == 0 {
        return Ok((frame, stats));
    }
    let raw = raw.unwrap_or_else(|| encode_records(&refs));
    let again = if level == 0 && incompressible(&b) {
        // The agent found nothing to compress: zstd would spend most of the relay's CPU to
        // find nothing either (the fan-in's profile: level 3 on every batch with one
        // reference). Its blocks go stored, as the agent's did.
        Batch {
            group: b.group.to_string(),
            generation: b.generation,
            first_seq: b.first_seq,
            record_count: refs.len() as u32,
            timestamp_ms: b.timestamp_ms,
            uncompressed_len: raw.len() as u32,
            compressed: rewind_formats::batch::stored_frame(&raw),
        }
    } else {
        let level = if level > 0 { level } else { DEDUP_LEVEL };
        Batch::from_payload(
            &b.group,
            b.generation,
            b.first_seq,
            b.timestamp_ms,
            refs.len(),
            &raw,
            level,
        )
    };
    Ok((Message::Batch(again).to_frame(), stats))
}

/// Whether the agent's batch `b` did not compress (its zstd frame is within 2% of the records'
/// bytes: stored blocks, or data zstd could not shrink).
fn incompressible(b: &BatchRef<'_>) -> bool {
    b.compressed.len() as u64 * 100 >= u64::from(b.uncompressed_len) * 98
}

/// The BATCH `frame` with its records compressed at `level`, or None when that is not smaller.
pub(crate) fn batch_frame(frame: &[u8], level: i32) -> Result<Option<Vec<u8>>> {
    let b = BatchRef::decode(&frame[FRAME_HEADER_LEN..]).context("a cached BATCH")?;
    let records = b
        .decode_records()
        .with_context(|| format!("the records of cached batch {}", b.first_seq))?;
    let refs: Vec<RecordRef<'_>> = records.iter().map(elide_zeros).collect();
    let again = Batch::build(
        &b.group,
        b.generation,
        b.first_seq,
        b.timestamp_ms,
        &refs,
        level,
    );
    if again.compressed.len() >= b.compressed.len() {
        return Ok(None);
    }
    Ok(Some(Message::Batch(again).to_frame()))
}

/// A data record of zeros as a zero record (same disk, range and seq); others as they are.
fn elide_zeros(r: RecordRef<'_>) -> RecordRef<'_> {
    if r.kind == RecordKind::Data && r.data.iter().all(|b| *b == 0) {
        RecordRef {
            kind: RecordKind::Zero,
            data: &[],
            ..r
        }
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recompressed_batch_holds_the_same_records_in_fewer_bytes() {
        let b = crate::server::testing::batch(1, 5, 200);
        let frame = Message::Batch(b.clone()).to_frame();
        let smaller = batch_frame(&frame, 19)
            .unwrap()
            .expect("level 19 beats level 1");
        assert!(smaller.len() < frame.len());
        let again = BatchRef::decode(&smaller[FRAME_HEADER_LEN..]).unwrap();
        assert_eq!(again.first_seq, b.first_seq);
        assert_eq!(again.decode_records().unwrap(), b.decode_records().unwrap());
    }

    #[test]
    fn a_repeated_block_goes_as_a_reference_the_target_resolves() {
        let block: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
        let data = [block.clone(), block.clone(), block.clone()].concat();
        let rec = |offset| RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset,
            len: data.len() as u32,
            data: &data,
        };
        let (mut tx, mut rx) = (DedupWindow::sender(64), DedupWindow::receiver(64));
        for (i, seq) in [1u64, 3].into_iter().enumerate() {
            let b = Batch::build(
                "g",
                1,
                rewind_formats::Seq(seq),
                0,
                &[rec(0), rec(1 << 20)],
                1,
            );
            let frame = Message::Batch(b.clone()).to_frame();
            let (out, stats) = dedup_frame(frame, 0, &mut tx).unwrap();
            // One literal in all: the first block of the first batch.
            assert_eq!(stats.literal_blocks, u64::from(i == 0));
            assert_eq!(stats.ref_blocks, 6 - u64::from(i == 0));
            assert!(out.len() < 1024, "{} bytes for 24 KiB", out.len());
            let again = BatchRef::decode(&out[FRAME_HEADER_LEN..]).unwrap();
            let got = again.decode_records_in(Some(&mut rx)).unwrap();
            assert_eq!(got, b.decode_records().unwrap());
        }
    }

    #[test]
    fn an_incompressible_batch_with_a_reference_is_stored_not_compressed_again() {
        // Random blocks (what zstd cannot shrink); the second batch repeats the first's block.
        let data = rewind_formats::testing::random_bytes(9 * 4096, 0x9e37_79b9_7f4a_7c15);
        let second = [&data[4096..], &data[..4096]].concat();
        let rec = |data: &[u8]| {
            Batch::build(
                "g",
                1,
                rewind_formats::Seq(1),
                0,
                &[RecordRef {
                    disk: 0,
                    kind: RecordKind::Data,
                    offset: 0,
                    len: data.len() as u32,
                    data,
                }],
                1,
            )
        };
        let (mut tx, mut rx) = (DedupWindow::sender(64), DedupWindow::receiver(64));
        for (i, d) in [&data[..4096], &second[..]].into_iter().enumerate() {
            let b = rec(d);
            assert!(b.compressed.len() >= d.len(), "zstd -1 left it as it was");
            let frame = Message::Batch(b.clone()).to_frame();
            let (out, stats) = dedup_frame(frame.clone(), 0, &mut tx).unwrap();
            assert_eq!(stats.ref_blocks, i as u64);
            let again = BatchRef::decode(&out[FRAME_HEADER_LEN..]).unwrap();
            if i == 1 {
                // Stored: the records' bytes plus zstd's frame and block headers.
                assert_eq!(
                    again.compressed.len(),
                    again.uncompressed_len as usize + 9 + 3
                );
                assert!(out.len() < frame.len() - 4000, "one block less");
            }
            assert_eq!(
                again.decode_records_in(Some(&mut rx)).unwrap(),
                b.decode_records().unwrap()
            );
        }
    }

    #[test]
    fn a_batch_with_nothing_to_deduplicate_goes_as_the_agent_made_it() {
        fn rec(data: &[u8], offset: u64) -> RecordRef<'_> {
            RecordRef {
                disk: 0,
                kind: RecordKind::Data,
                offset,
                len: 4096,
                data,
            }
        }
        let (a, b, c) = (&[1u8; 4096][..], &[2u8; 4096][..], &[3u8; 4096][..]);
        let frame = Message::Batch(Batch::build(
            "g",
            1,
            rewind_formats::Seq(1),
            0,
            &[rec(a, 0), rec(b, 4096)],
            1,
        ))
        .to_frame();
        let (mut tx, mut rx) = (DedupWindow::sender(8), DedupWindow::receiver(8));
        let (out, stats) = dedup_frame(frame.clone(), 0, &mut tx).unwrap();
        assert_eq!((out == frame, stats.ref_blocks), (true, 0));
        // The target's window took the same two blocks from the agent's frame: a reference to
        // either resolves.
        let again = BatchRef::decode(&out[FRAME_HEADER_LEN..]).unwrap();
        again.decode_records_in(Some(&mut rx)).unwrap();
        let next = Message::Batch(Batch::build(
            "g",
            1,
            rewind_formats::Seq(3),
            0,
            &[rec(b, 8192)],
            1,
        ))
        .to_frame();
        let (out, stats) = dedup_frame(next, 0, &mut tx).unwrap();
        assert_eq!(stats.ref_blocks, 1);
        let again = BatchRef::decode(&out[FRAME_HEADER_LEN..]).unwrap();
        let got = again.decode_records_in(Some(&mut rx)).unwrap();
        assert_eq!(got.get(0).data, b);
        // With a level asked for, the batch is compressed again even with nothing found.
        let f = Message::Batch(Batch::build(
            "g",
            1,
            rewind_formats::Seq(4),
            0,
            &[rec(c, 0)],
            1,
        ))
        .to_frame();
        let (out, stats) = dedup_frame(f.clone(), 19, &mut tx).unwrap();
        assert_eq!(stats.ref_blocks, 0);
        assert_ne!(out, f);
    }

    #[test]
    fn a_record_of_zeros_goes_as_a_zero_record_of_the_same_range() {
        fn rec(offset: u64, kind: RecordKind, data: &[u8]) -> RecordRef<'_> {
            RecordRef {
                disk: 0,
                kind,
                offset,
                len: 4096,
                data,
            }
        }
        let (zeros, data) = (vec![0u8; 4096], vec![9u8; 4096]);
        let b = Batch::build(
            "g",
            1,
            rewind_formats::Seq(10),
            1_000,
            &[
                rec(0, RecordKind::Data, &zeros),
                rec(8192, RecordKind::Data, &data),
                rec(16384, RecordKind::Trim, &[]),
            ],
            1,
        );
        let frame = Message::Batch(b).to_frame();
        let out = batch_frame(&frame, 3)
            .unwrap()
            .expect("smaller without the zeros");
        let again = BatchRef::decode(&out[FRAME_HEADER_LEN..]).unwrap();
        assert_eq!(again.first_seq.0, 10);
        let got = again.decode_records().unwrap();
        let got: Vec<(RecordKind, u64, u32, usize)> = got
            .iter()
            .map(|r| (r.kind, r.offset, r.len, r.data.len()))
            .collect();
        assert_eq!(
            got,
            [
                (RecordKind::Zero, 0, 4096, 0),
                (RecordKind::Data, 8192, 4096, 4096),
                (RecordKind::Trim, 16384, 4096, 0),
            ]
        );
    }
}
