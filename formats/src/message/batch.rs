//! The record stream: BATCH (records), TAG (a recovery point) and ACK (what is durable).

use super::{message_name, FrameKind};
use crate::bytes::{Reader, Writer};
use crate::records::RECORD_HEADER_LEN;
use crate::{DecodeError, Seq, TagInfo, MAX_BATCH_RECORDS, MAX_BATCH_UNCOMPRESSED};

/// agent -> target: consecutive records of one group, zstd-compressed.
///
/// Records travel zstd-compressed; `records.rs` encodes/decodes them ([`Batch::build`],
/// [`Batch::decode_records`]). A decoded Batch has `first_seq >= 1`,
/// `record_count` in 1..=[`MAX_BATCH_RECORDS`], `uncompressed_len` <= [`MAX_BATCH_UNCOMPRESSED`]
/// and at least 16 bytes per record, and `first_seq + record_count - 1` does not overflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub group: String,
    pub generation: u64,
    pub first_seq: Seq,
    pub record_count: u32,
    pub timestamp_ms: u64,
    pub uncompressed_len: u32,
    pub compressed: Vec<u8>,
}

/// A BATCH decoded in place: the compressed records stay in the frame's payload, so the receiver
/// does not copy megabytes per batch. Same fields and checks as [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRef<'a> {
    pub group: String,
    pub generation: u64,
    pub first_seq: Seq,
    pub record_count: u32,
    pub timestamp_ms: u64,
    pub uncompressed_len: u32,
    pub compressed: &'a [u8],
}

impl<'a> BatchRef<'a> {
    /// Decodes a BATCH payload without copying its records. Never panics; rejects trailing bytes.
    pub fn decode(payload: &'a [u8]) -> Result<BatchRef<'a>, DecodeError> {
        let mut r = Reader::new(payload);
        let b = read_batch(&mut r)?;
        r.finish(message_name(FrameKind::Batch))?;
        Ok(b)
    }

    pub fn to_owned(&self) -> Batch {
        Batch {
            group: self.group.clone(),
            generation: self.generation,
            first_seq: self.first_seq,
            record_count: self.record_count,
            timestamp_ms: self.timestamp_ms,
            uncompressed_len: self.uncompressed_len,
            compressed: self.compressed.to_vec(),
        }
    }
}

/// agent -> target: a recovery point tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub group: String,
    pub generation: u64,
    pub tag: TagInfo,
}

/// target -> agent: everything of `group` up to `durable` is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub group: String,
    pub durable: Seq,
}

/// BATCH fields after the group name: generation, first_seq, record_count, timestamp_ms,
/// uncompressed_len, compressed_len.
pub(crate) const BATCH_FIXED_LEN: usize = 8 + 8 + 4 + 8 + 4 + 4;

impl Batch {
    pub(super) fn write(&self, w: &mut Writer) {
        w.name(&self.group);
        w.u64(self.generation);
        w.u64(self.first_seq.0);
        w.u32(self.record_count);
        w.u64(self.timestamp_ms);
        w.u32(self.uncompressed_len);
        let len = u32::try_from(self.compressed.len()).expect("compressed batch over 4 GiB");
        w.u32(len);
        w.bytes(&self.compressed);
    }
}

impl Tag {
    pub(super) fn write(&self, w: &mut Writer) {
        w.name(&self.group);
        w.u64(self.generation);
        self.tag.write(w);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Tag, DecodeError> {
        Ok(Tag {
            group: r.name("group name")?,
            generation: r.u64()?,
            tag: TagInfo::read(r)?,
        })
    }
}

impl Ack {
    pub(super) fn write(&self, w: &mut Writer) {
        w.name(&self.group);
        w.u64(self.durable.0);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Ack, DecodeError> {
        Ok(Ack {
            group: r.name("group name")?,
            durable: Seq(r.u64()?),
        })
    }
}

pub(super) fn read_batch<'a>(r: &mut Reader<'a>) -> Result<BatchRef<'a>, DecodeError> {
    let group = r.name("group name")?;
    let generation = r.u64()?;
    let first_seq = Seq(r.u64()?);
    let record_count = r.u32()?;
    let timestamp_ms = r.u64()?;
    let uncompressed_len = r.u32()?;
    let compressed_len = r.u32()?;
    if first_seq.0 == 0 {
        return Err(DecodeError::invalid(
            "batch first_seq",
            "0 (seqs start at 1)",
        ));
    }
    if record_count == 0 {
        return Err(DecodeError::invalid("batch record_count", "0"));
    }
    if record_count > MAX_BATCH_RECORDS {
        return Err(DecodeError::too_large(
            "batch record_count",
            u64::from(record_count),
            u64::from(MAX_BATCH_RECORDS),
        ));
    }
    if first_seq
        .0
        .checked_add(u64::from(record_count) - 1)
        .is_none()
    {
        return Err(DecodeError::invalid(
            "batch seqs",
            format!("first_seq {first_seq} + {record_count} records overflows"),
        ));
    }
    if uncompressed_len > MAX_BATCH_UNCOMPRESSED {
        return Err(DecodeError::too_large(
            "batch uncompressed_len",
            u64::from(uncompressed_len),
            u64::from(MAX_BATCH_UNCOMPRESSED),
        ));
    }
    // Every record takes at least its header in the uncompressed payload.
    if u64::from(uncompressed_len) < u64::from(record_count) * RECORD_HEADER_LEN as u64 {
        return Err(DecodeError::invalid(
            "batch uncompressed_len",
            format!("{uncompressed_len} bytes cannot hold {record_count} records"),
        ));
    }
    let compressed = r.bytes(compressed_len as usize)?;
    Ok(BatchRef {
        group,
        generation,
        first_seq,
        record_count,
        timestamp_ms,
        uncompressed_len,
        compressed,
    })
}
