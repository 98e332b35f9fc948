//! [`PartsBuilder`]: stored-mode BATCH frames that reference large record data instead of
//! copying it, for a vectored write.

use super::stored::{self, BLOCK_HEADER_LEN, MAX_BLOCK};
use super::{check_caps, check_group, prefix_len, Fields};
use crate::frame::{FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::records::{check_data_matches, RecordRef};
use crate::Seq;

/// One consecutive piece of a [`PartsFrame`].
#[derive(Clone, Copy, Debug)]
enum Piece<'a> {
    /// A range of the frame's own small buffer (headers).
    Meta { start: usize, end: usize },
    /// Record data where it lies.
    Data(&'a [u8]),
}

/// A stored-mode BATCH frame whose record data is not copied: a small buffer of headers plus
/// references to the data, for a vectored write (`writev`).
#[derive(Debug, Default)]
pub struct PartsFrame<'a> {
    meta: Vec<u8>,
    pieces: Vec<Piece<'a>>,
    len: usize,
}

impl<'a> PartsFrame<'a> {
    /// The frame's bytes, in order.
    pub fn parts(&self) -> Vec<&[u8]> {
        self.pieces
            .iter()
            .map(|p| match *p {
                Piece::Meta { start, end } => &self.meta[start..end],
                Piece::Data(d) => d,
            })
            .collect()
    }

    /// Total frame length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a frame of no bytes (never one [`PartsBuilder::finish`] returns).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame in one buffer (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// Record data shorter than this is copied into a [`PartsFrame`]'s own buffer: the kernel's cost
/// per writev segment on a TCP socket is far above the cost of copying a few KiB.
const MIN_REFERENCED_DATA: usize = 32 << 10;

/// Builds [`PartsFrame`]s: the same bytes as [`super::Compression::Store`], without copying
/// large data.
pub struct PartsBuilder<'a> {
    group: String,
    generation: u64,
    frame: PartsFrame<'a>,
    block_header: usize,
    block_len: usize,
    count: u32,
    raw_len: usize,
}

impl<'a> PartsBuilder<'a> {
    /// A builder for batches of `group` at `generation`.
    ///
    /// # Panics
    /// If `group` is longer than [`crate::MAX_NAME_LEN`].
    pub fn new(group: &str, generation: u64) -> PartsBuilder<'a> {
        check_group(group);
        let mut b = PartsBuilder {
            group: group.to_string(),
            generation,
            frame: PartsFrame::default(),
            block_header: 0,
            block_len: 0,
            count: 0,
            raw_len: 0,
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        let prefix = prefix_len(&self.group);
        self.frame = PartsFrame {
            meta: Vec::with_capacity(4096),
            pieces: Vec::new(),
            len: 0,
        };
        self.add_meta(&vec![0; prefix + stored::FRAME_HEADER_LEN]);
        self.block_header = self.frame.meta.len();
        self.add_meta(&[0; BLOCK_HEADER_LEN]);
        self.block_len = 0;
        self.count = 0;
        self.raw_len = 0;
    }

    fn add_meta(&mut self, bytes: &[u8]) {
        let f = &mut self.frame;
        let start = f.meta.len();
        f.meta.extend_from_slice(bytes);
        let end = f.meta.len();
        f.len += bytes.len();
        match f.pieces.last_mut() {
            Some(Piece::Meta { end: e, .. }) if *e == start => *e = end,
            _ => f.pieces.push(Piece::Meta { start, end }),
        }
    }

    /// Room left in the current stored block, starting a new block when it is full.
    fn block_room(&mut self) -> usize {
        if self.block_len == MAX_BLOCK {
            stored::put_block_header(
                &mut self.frame.meta,
                self.block_header,
                false,
                self.block_len,
            );
            self.block_header = self.frame.meta.len();
            self.add_meta(&[0; BLOCK_HEADER_LEN]);
            self.block_len = 0;
        }
        MAX_BLOCK - self.block_len
    }

    /// Appends bytes by copying them, splitting at block boundaries.
    fn write_copy(&mut self, mut h: &[u8]) {
        self.raw_len += h.len();
        while !h.is_empty() {
            let take = h.len().min(self.block_room());
            self.add_meta(&h[..take]);
            self.block_len += take;
            h = &h[take..];
        }
    }

    /// Appends record data (referenced, or copied if small), splitting at block boundaries.
    fn write_data(&mut self, mut data: &'a [u8]) {
        if data.len() < MIN_REFERENCED_DATA {
            return self.write_copy(data);
        }
        self.raw_len += data.len();
        while !data.is_empty() {
            let take = data.len().min(self.block_room());
            self.frame.pieces.push(Piece::Data(&data[..take]));
            self.frame.len += take;
            self.block_len += take;
            data = &data[take..];
        }
    }

    /// Appends one record; its data is referenced, not copied, unless it is small.
    ///
    /// # Panics
    /// If the record's data does not match its kind and len (see [`crate::encode_records`]).
    pub fn push(&mut self, rec: &RecordRef<'a>) {
        check_data_matches(self.count as usize, rec);
        self.write_copy(&rec.encode_header());
        self.write_data(rec.data);
        self.count += 1;
    }

    /// Records pushed since the last frame.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// True when no record was pushed since the last frame.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Completes the frame (headers and checksum) and starts a new one.
    ///
    /// # Panics
    /// If the batch is empty or over [`crate::MAX_BATCH_RECORDS`] or
    /// [`crate::MAX_BATCH_UNCOMPRESSED`]: no reader would accept it.
    pub fn finish(&mut self, first_seq: Seq, timestamp_ms: u64) -> PartsFrame<'a> {
        check_caps(self.count, self.raw_len);
        let prefix = prefix_len(&self.group);
        let raw_len = self.raw_len as u32;
        stored::put_block_header(
            &mut self.frame.meta,
            self.block_header,
            true,
            self.block_len,
        );
        let end = Fields {
            group: &self.group,
            generation: self.generation,
            first_seq,
            record_count: self.count,
            timestamp_ms,
            uncompressed_len: raw_len,
            compressed_len: (self.frame.len - prefix) as u32,
        }
        .write(&mut self.frame.meta);
        stored::put_frame_header(&mut self.frame.meta, end, raw_len);
        let mut frame = std::mem::take(&mut self.frame);
        let crc = frame.parts().iter().fold((0u32, 0usize), |(crc, at), p| {
            // Skip the frame header (the first 24 bytes, all in the first meta piece).
            let skip = FRAME_HEADER_LEN.saturating_sub(at).min(p.len());
            (crc32c::crc32c_append(crc, &p[skip..]), at + p.len())
        });
        let header = FrameHeader {
            version: crate::FRAME_VERSION,
            kind: FrameKind::Batch,
            payload_len: (frame.len - FRAME_HEADER_LEN) as u32,
            payload_crc: crc.0,
        };
        frame.meta[..FRAME_HEADER_LEN].copy_from_slice(&header.encode());
        self.reset();
        frame
    }
}
