//! Turning what an agent sends into journal chunks: every check that decides whether a batch or
//! tag may enter a group's journal, and its encoding for the writer.

use std::sync::Arc;

use rewind_formats::message::{BatchRef, ErrorCode, Tag};
use rewind_formats::segment::{
    records_chunk_len, tag_chunk_len, write_records_chunk, write_tag_chunk,
};
use rewind_formats::Seq;

use super::group::Group;
use super::writer::AppendReq;
use super::Refusal;
use crate::aligned::AlignedBuf;

fn refuse(code: ErrorCode, message: String) -> Refusal {
    Refusal { code, message }
}

/// A group as one session feeds it.
pub struct Feed {
    pub group: Arc<Group>,
    pub generation: u64,
    /// Seq the next batch must start at.
    pub next_seq: Seq,
    pub disk_sizes: Vec<u64>,
}

impl Feed {
    /// Validate a batch completely (generation, seq continuity, decompression, every record's
    /// disk and bounds) and encode it as a journal chunk. Nothing of a bad batch gets through.
    pub fn batch_chunk(&self, b: &BatchRef<'_>) -> Result<AppendReq, Refusal> {
        let g = &self.group.name;
        if b.generation != self.generation {
            return Err(refuse(
                ErrorCode::StaleGeneration,
                format!(
                    "batch for group {g} has generation {}; the session is at {}",
                    b.generation, self.generation
                ),
            ));
        }
        if b.first_seq != self.next_seq {
            return Err(refuse(
                ErrorCode::SeqGap,
                format!(
                    "batch for group {g} starts at seq {}; expected {}",
                    b.first_seq.0, self.next_seq.0
                ),
            ));
        }
        let records = b.decode_records().map_err(|e| {
            refuse(
                ErrorCode::Protocol,
                format!("batch for group {g} at seq {}: {e}", b.first_seq.0),
            )
        })?;
        let refs: Vec<_> = records.iter().collect();
        for (i, r) in refs.iter().enumerate() {
            let seq = b.first_seq.0 + i as u64;
            let Some(&size) = self.disk_sizes.get(usize::from(r.disk)) else {
                return Err(refuse(
                    ErrorCode::UnknownDisk,
                    format!(
                        "record seq {seq} of group {g} names disk index {}; the group has {} disks",
                        r.disk,
                        self.disk_sizes.len()
                    ),
                ));
            };
            if r.offset
                .checked_add(u64::from(r.len))
                .is_none_or(|end| end > size)
            {
                return Err(refuse(
                    ErrorCode::OutOfRange,
                    format!("record seq {seq} of group {g} disk #{} offset {} length {} is past the disk end ({size} bytes)", r.disk, r.offset, r.len),
                ));
            }
        }
        let len = records_chunk_len(&refs);
        let mut buf = AlignedBuf::from_pool(len);
        let header = write_records_chunk(
            &mut buf[..len],
            b.first_seq,
            b.timestamp_ms,
            self.generation,
            &refs,
        );
        Ok(AppendReq {
            group: self.group.clone(),
            buf,
            header,
        })
    }

    /// Validate a tag (it must label a seq already sent) and encode it as a journal chunk.
    pub fn tag_chunk(&self, t: &Tag) -> Result<AppendReq, Refusal> {
        let g = &self.group.name;
        if t.generation != self.generation {
            return Err(refuse(
                ErrorCode::StaleGeneration,
                format!(
                    "tag for group {g} has generation {}; the session is at {}",
                    t.generation, self.generation
                ),
            ));
        }
        if t.tag.seq.0 == 0 || t.tag.seq >= self.next_seq {
            return Err(refuse(
                ErrorCode::SeqGap,
                format!(
                    "tag {} of group {g} labels seq {}, which has not been sent (next is {})",
                    t.tag.name, t.tag.seq.0, self.next_seq.0
                ),
            ));
        }
        let len = tag_chunk_len(&t.tag);
        let mut buf = AlignedBuf::zeroed(len);
        let header = write_tag_chunk(&mut buf[..len], t.tag.timestamp_ms, self.generation, &t.tag);
        Ok(AppendReq {
            group: self.group.clone(),
            buf,
            header,
        })
    }
}
