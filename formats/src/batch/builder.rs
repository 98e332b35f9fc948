//! [`BatchBuilder`]: records in, one BATCH frame in one buffer out.

use std::io::{self, Cursor};

use super::stored::{self, BLOCK_HEADER_LEN, MAX_BLOCK};
use super::{check_caps, check_group, prefix_len, Compression, Fields};
use crate::frame::{FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::framed::FramedRecord;
use crate::records::{check_data_matches, RecordRef};
use crate::Seq;

enum Mode {
    Zstd {
        raw: Vec<u8>,
        compressor: Box<zstd::bulk::Compressor<'static>>,
    },
    Store {
        /// The frame being written: prefix, zstd frame header, blocks so far.
        frame: Vec<u8>,
        /// Where the current block's header sits in `frame`.
        block_header: usize,
        block_len: usize,
    },
}

impl Mode {
    fn new(compression: Compression) -> io::Result<Mode> {
        Ok(match compression {
            Compression::Zstd(level) => Mode::Zstd {
                raw: Vec::new(),
                compressor: Box::new(zstd::bulk::Compressor::new(level)?),
            },
            Compression::Store => Mode::Store {
                frame: Vec::new(),
                block_header: 0,
                block_len: 0,
            },
        })
    }
}

/// Accumulates records of one group, then emits one BATCH frame; reusable batch after batch.
pub struct BatchBuilder {
    group: String,
    generation: u64,
    mode: Mode,
    count: u32,
    raw_len: usize,
}

impl BatchBuilder {
    /// A builder for batches of `group` at `generation`. Fails only if zstd cannot set up a
    /// compressor at that level.
    ///
    /// # Panics
    /// If `group` is longer than [`crate::MAX_NAME_LEN`].
    pub fn new(group: &str, generation: u64, compression: Compression) -> io::Result<BatchBuilder> {
        check_group(group);
        let mut b = BatchBuilder {
            group: group.to_string(),
            generation,
            mode: Mode::new(compression)?,
            count: 0,
            raw_len: 0,
        };
        b.reset(Vec::new());
        Ok(b)
    }

    /// Packs the next batches with `compression` (a sender that picks a level per batch calls
    /// this between batches). A zstd level change keeps the compressor and its memory.
    ///
    /// # Panics
    /// If records were pushed since the last frame.
    pub fn set_compression(&mut self, compression: Compression) -> io::Result<()> {
        assert!(self.is_empty(), "compression changed inside a batch");
        match (&mut self.mode, compression) {
            (Mode::Zstd { compressor, .. }, Compression::Zstd(level)) => {
                compressor.set_compression_level(level)?
            }
            (Mode::Store { .. }, Compression::Store) => {}
            (_, c) => {
                self.mode = Mode::new(c)?;
                self.reset(Vec::new());
            }
        }
        Ok(())
    }

    /// Bytes of every frame before its compressed records (frame header, group name, fixed
    /// batch fields): a finished frame's `compressed_len` is its length minus this.
    pub fn prefix_len(&self) -> usize {
        prefix_len(&self.group)
    }

    fn reset(&mut self, mut buf: Vec<u8>) {
        let prefix = self.prefix_len();
        self.count = 0;
        self.raw_len = 0;
        match &mut self.mode {
            Mode::Zstd { raw, .. } => raw.clear(),
            Mode::Store {
                frame,
                block_header,
                block_len,
            } => {
                buf.clear();
                buf.resize(prefix + stored::FRAME_HEADER_LEN + BLOCK_HEADER_LEN, 0);
                *frame = buf;
                *block_header = prefix + stored::FRAME_HEADER_LEN;
                *block_len = 0;
            }
        }
    }

    fn write(&mut self, mut bytes: &[u8]) {
        self.raw_len += bytes.len();
        match &mut self.mode {
            Mode::Zstd { raw, .. } => raw.extend_from_slice(bytes),
            Mode::Store {
                frame,
                block_header,
                block_len,
            } => {
                while !bytes.is_empty() {
                    if *block_len == MAX_BLOCK {
                        stored::put_block_header(frame, *block_header, false, *block_len);
                        *block_header = frame.len();
                        frame.extend_from_slice(&[0; BLOCK_HEADER_LEN]);
                        *block_len = 0;
                    }
                    let take = bytes.len().min(MAX_BLOCK - *block_len);
                    frame.extend_from_slice(&bytes[..take]);
                    *block_len += take;
                    bytes = &bytes[take..];
                }
            }
        }
    }

    /// Appends one record (header, then data for data records).
    ///
    /// # Panics
    /// If the record's data does not match its kind and len (see [`crate::encode_records`]).
    pub fn push(&mut self, rec: &RecordRef<'_>) {
        check_data_matches(self.count as usize, rec);
        self.write(&rec.encode_header());
        self.write(rec.data);
        self.count += 1;
    }

    /// Appends one record of a batch for a session granted framed records
    /// ([`crate::framed`]): as [`BatchBuilder::push`] when it is plain, else its header, the
    /// framed prefix and its table ++ frames.
    ///
    /// # Panics
    /// As [`crate::framed::put_framed_record`].
    pub fn push_framed(&mut self, rec: &FramedRecord<'_>) {
        let i = self.count as usize;
        crate::framed::put_framed_record(i, rec, |b| self.write(b));
        self.count += 1;
    }

    /// Records pushed since the last frame.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Uncompressed payload bytes so far (headers and data).
    pub fn raw_len(&self) -> usize {
        self.raw_len
    }

    /// True when no record was pushed since the last frame.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Emits the BATCH frame (header + payload) of the records pushed so far and starts a new
    /// batch; `spare` is an old frame whose allocation is reused. Fails only if zstd does.
    ///
    /// # Panics
    /// If the batch is empty or over [`crate::MAX_BATCH_RECORDS`] or
    /// [`crate::MAX_BATCH_UNCOMPRESSED`]: no reader would accept it.
    pub fn finish(
        &mut self,
        spare: Vec<u8>,
        first_seq: Seq,
        timestamp_ms: u64,
    ) -> io::Result<Vec<u8>> {
        check_caps(self.count, self.raw_len);
        let prefix = self.prefix_len();
        let raw_len = self.raw_len;
        let mut out = match &mut self.mode {
            Mode::Zstd { raw, compressor } => {
                let mut out = spare;
                out.clear();
                out.reserve(prefix + zstd::zstd_safe::compress_bound(raw.len()));
                out.resize(prefix, 0);
                let mut cursor = Cursor::new(&mut out);
                cursor.set_position(prefix as u64);
                compressor.compress_to_buffer(raw.as_slice(), &mut cursor)?;
                out
            }
            Mode::Store {
                frame,
                block_header,
                block_len,
            } => {
                stored::put_block_header(frame, *block_header, true, *block_len);
                stored::put_frame_header(frame, prefix, raw_len as u32);
                std::mem::replace(frame, spare)
            }
        };
        Fields {
            group: &self.group,
            generation: self.generation,
            first_seq,
            record_count: self.count,
            timestamp_ms,
            uncompressed_len: raw_len as u32,
            compressed_len: (out.len() - prefix) as u32,
        }
        .write(&mut out);
        let header = FrameHeader::for_payload(FrameKind::Batch, &out[FRAME_HEADER_LEN..]);
        out[..FRAME_HEADER_LEN].copy_from_slice(&header.encode());
        // Store mode got `spare` as its next frame buffer; reset prepares it.
        let next = match &mut self.mode {
            Mode::Store { frame, .. } => std::mem::take(frame),
            Mode::Zstd { .. } => Vec::new(),
        };
        self.reset(next);
        Ok(out)
    }
}
