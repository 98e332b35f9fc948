//! Recompression upstream (`--recompress-level N`): the relay has the CPU the protected host
//! should not spend. An agent compresses its batches fast (zstd level 1 by default); the relay
//! decompresses each batch it forwards, checks its records, and compresses them again at a
//! higher level, keeping the smaller of the two. The cache keeps the agent's frame as it came,
//! so a crash or a change of level never touches what was acknowledged.

use anyhow::{Context, Result};
use rewind_formats::frame::FRAME_HEADER_LEN;
use rewind_formats::message::{Batch, BatchRef, Message};

/// The BATCH `frame` with its records compressed at `level`, or None when that is not smaller.
pub(crate) fn batch_frame(frame: &[u8], level: i32) -> Result<Option<Vec<u8>>> {
    let b = BatchRef::decode(&frame[FRAME_HEADER_LEN..]).context("a cached BATCH")?;
    let records = b
        .decode_records()
        .with_context(|| format!("the records of cached batch {}", b.first_seq))?;
    let refs: Vec<_> = records.iter().collect();
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
}
