//! BATCH frames built with as few copies as possible.
//!
//! `Message::Batch(Batch::build(..)).to_frame()` copies the compressed bytes twice and allocates
//! three buffers per batch; at a few GB/s that makes the load generator the bottleneck. The
//! [`BatchBuilder`] encodes records into one reused buffer and compresses straight into the frame
//! buffer behind a header it fills in afterwards. The bytes are the same layout as
//! `rewind-formats` defines (a test checks that the formats decoder reads them back exactly).

use std::io::Cursor;

use rewind_formats::{FrameHeader, FrameKind, RecordRef, Seq, FRAME_HEADER_LEN};

use crate::error::{Error, Result};

/// Bytes of a record header in a batch's uncompressed payload.
pub const RECORD_HEADER_LEN: usize = 16;

/// Accumulates records, then emits one BATCH frame.
pub struct BatchBuilder {
    raw: Vec<u8>,
    count: u32,
    compressor: zstd::bulk::Compressor<'static>,
}

impl BatchBuilder {
    /// A builder compressing at zstd `level`.
    pub fn new(level: i32) -> Result<BatchBuilder> {
        let compressor =
            zstd::bulk::Compressor::new(level).map_err(Error::io(format!("zstd level {level}")))?;
        Ok(BatchBuilder {
            raw: Vec::new(),
            count: 0,
            compressor,
        })
    }

    /// Appends one record (header, then data for data records).
    pub fn push(&mut self, rec: &RecordRef<'_>) {
        self.raw.extend_from_slice(&rec.disk.to_le_bytes());
        self.raw.push(rec.kind as u8);
        self.raw.push(0);
        self.raw.extend_from_slice(&rec.len.to_le_bytes());
        self.raw.extend_from_slice(&rec.offset.to_le_bytes());
        self.raw.extend_from_slice(rec.data);
        self.count += 1;
    }

    /// Records pushed since the last frame.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Uncompressed payload bytes so far (headers and data).
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Emits the BATCH frame (header + payload) of the records pushed so far into `out` (reusing
    /// its allocation) and starts a new batch. Must not be called when empty.
    pub fn finish(
        &mut self,
        mut out: Vec<u8>,
        group: &str,
        generation: u64,
        first_seq: Seq,
        timestamp_ms: u64,
    ) -> Result<Vec<u8>> {
        assert!(self.count > 0, "empty batch");
        let name = group.as_bytes();
        assert!(
            name.len() <= rewind_formats::MAX_NAME_LEN,
            "group name too long"
        );
        let bound = zstd::zstd_safe::compress_bound(self.raw.len());
        out.clear();
        out.reserve(FRAME_HEADER_LEN + 1 + name.len() + 36 + bound);
        out.resize(FRAME_HEADER_LEN, 0);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&first_seq.0.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&timestamp_ms.to_le_bytes());
        out.extend_from_slice(&(self.raw.len() as u32).to_le_bytes());
        let len_pos = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        let compressed = {
            let mut cursor = Cursor::new(&mut out);
            cursor.set_position(start as u64);
            self.compressor
                .compress_to_buffer(&self.raw, &mut cursor)
                .map_err(Error::io("zstd compression of a batch"))?
        };
        debug_assert_eq!(out.len(), start + compressed);
        out[len_pos..len_pos + 4].copy_from_slice(&(compressed as u32).to_le_bytes());
        let header = FrameHeader::for_payload(FrameKind::Batch, &out[FRAME_HEADER_LEN..]);
        out[..FRAME_HEADER_LEN].copy_from_slice(&header.encode());
        self.raw.clear();
        self.count = 0;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_formats::{decode_frame, Batch, Message, RecordKind};

    #[test]
    fn frames_decode_with_rewind_formats() {
        let data_a = vec![0xabu8; 4096];
        let data_b: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
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
        ];
        let mut b = BatchBuilder::new(1).unwrap();
        for r in &records {
            b.push(r);
        }
        assert_eq!(b.record_count(), 3);
        let frame = b.finish(Vec::new(), "g1", 3, Seq(10), 1234).unwrap();
        assert!(b.is_empty());

        let (kind, payload, used) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(kind, FrameKind::Batch);
        assert_eq!(used, frame.len());
        let Message::Batch(batch) = Message::decode(kind, payload).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(batch.group, "g1");
        assert_eq!(batch.generation, 3);
        assert_eq!(batch.first_seq, Seq(10));
        assert_eq!(batch.record_count, 3);
        assert_eq!(batch.timestamp_ms, 1234);
        assert_eq!(batch.last_seq(), Seq(12));
        let decoded = batch.decode_records().unwrap();
        let got: Vec<RecordRef<'_>> = decoded.iter().collect();
        assert_eq!(got, records);

        // Same uncompressed payload as the reference encoder.
        let reference = Batch::build("g1", 3, Seq(10), 1234, &records, 1);
        assert_eq!(reference.uncompressed_len, batch.uncompressed_len);

        // The builder is reusable and reuses the buffer it is given.
        b.push(&records[0]);
        let frame2 = b.finish(frame, "g1", 3, Seq(13), 1235).unwrap();
        let (_, payload, _) = decode_frame(&frame2).unwrap().unwrap();
        let Message::Batch(batch) = Message::decode(FrameKind::Batch, payload).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(batch.record_count, 1);
        assert_eq!(batch.decode_records().unwrap().get(0), records[0]);
    }
}
