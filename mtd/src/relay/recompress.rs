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

use anyhow::{Context, Result};
use rewind_formats::frame::FRAME_HEADER_LEN;
use rewind_formats::message::{Batch, BatchRef, Message};
use rewind_formats::records::{RecordKind, RecordRef};

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
