//! BATCH frames built with as few copies as possible.
//!
//! `Message::Batch(Batch::build(..)).to_frame()` copies the compressed bytes twice and allocates
//! three buffers per batch; at a few GB/s that makes the load generator the bottleneck. The
//! [`BatchBuilder`] writes a frame in the layout `rewind-formats` defines (a test checks that its
//! decoder reads the frames back exactly) with fewer copies:
//!
//! - [`Compression::Zstd`]: records are encoded into one reused buffer and compressed straight
//!   into the frame buffer behind a header filled in afterwards.
//! - [`Compression::Store`]: records are written straight into the frame as a zstd frame of raw
//!   (stored) blocks, RFC 8878 section 3.1.1.2. That is what zstd itself emits for incompressible
//!   data, so the target does the same work, while the load generator skips zstd's futile search
//!   and two copies: one copy per byte instead of three.

use std::fmt;
use std::io::Cursor;
use std::str::FromStr;

use rewind_formats::{FrameHeader, FrameKind, RecordRef, Seq, FRAME_HEADER_LEN};

use crate::error::{Error, Result};

/// Bytes of a record header in a batch's uncompressed payload.
pub const RECORD_HEADER_LEN: usize = 16;

/// Batch message fields after the group name: generation, first_seq, record_count,
/// timestamp_ms, uncompressed_len, compressed_len.
const BATCH_FIXED_LEN: usize = 8 + 8 + 4 + 8 + 4 + 4;

/// zstd frame magic (RFC 8878 3.1.1).
const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Frame header descriptor: 4-byte content size (flag 2), single segment (no window
/// descriptor), no checksum, no dictionary.
const ZSTD_FHD_SINGLE_FCS4: u8 = (2 << 6) | (1 << 5);
/// Magic, descriptor, 4-byte content size.
const ZSTD_FRAME_HEADER_LEN: usize = 4 + 1 + 4;
/// Block header: 3 bytes, little-endian: last flag, type (0 = raw), size.
const ZSTD_BLOCK_HEADER_LEN: usize = 3;
/// Largest block (Block_Maximum_Size).
const ZSTD_MAX_BLOCK: usize = 128 << 10;

/// How record payloads are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zstd at this level.
    Zstd(i32),
    /// A zstd frame of stored (raw) blocks: no compression, minimal CPU.
    Store,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "store" => Ok(Compression::Store),
            "zstd" => Ok(Compression::Zstd(1)),
            _ => match s.strip_prefix("zstd:").map(str::parse) {
                Some(Ok(level)) => Ok(Compression::Zstd(level)),
                _ => Err(format!(
                    "compression {s:?}: expected zstd, zstd:LEVEL or store"
                )),
            },
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Store => f.write_str("store"),
        }
    }
}

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

/// Accumulates records of one group, then emits one BATCH frame.
pub struct BatchBuilder {
    group: String,
    generation: u64,
    mode: Mode,
    count: u32,
    raw_len: usize,
}

impl BatchBuilder {
    /// A builder for batches of `group` at `generation`.
    pub fn new(group: &str, generation: u64, compression: Compression) -> Result<BatchBuilder> {
        assert!(
            group.len() <= rewind_formats::MAX_NAME_LEN,
            "group name too long"
        );
        let mode = match compression {
            Compression::Zstd(level) => Mode::Zstd {
                raw: Vec::new(),
                compressor: Box::new(
                    zstd::bulk::Compressor::new(level)
                        .map_err(Error::io(format!("zstd level {level}")))?,
                ),
            },
            Compression::Store => Mode::Store {
                frame: Vec::new(),
                block_header: 0,
                block_len: 0,
            },
        };
        let mut b = BatchBuilder {
            group: group.to_string(),
            generation,
            mode,
            count: 0,
            raw_len: 0,
        };
        b.reset(Vec::new());
        Ok(b)
    }

    /// Bytes before the compressed data: frame header, group name, fixed batch fields.
    fn prefix_len(&self) -> usize {
        FRAME_HEADER_LEN + 1 + self.group.len() + BATCH_FIXED_LEN
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
                buf.resize(prefix + ZSTD_FRAME_HEADER_LEN + ZSTD_BLOCK_HEADER_LEN, 0);
                *frame = buf;
                *block_header = prefix + ZSTD_FRAME_HEADER_LEN;
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
                    if *block_len == ZSTD_MAX_BLOCK {
                        put_block_header(frame, *block_header, false, *block_len);
                        *block_header = frame.len();
                        frame.extend_from_slice(&[0; ZSTD_BLOCK_HEADER_LEN]);
                        *block_len = 0;
                    }
                    let take = bytes.len().min(ZSTD_MAX_BLOCK - *block_len);
                    frame.extend_from_slice(&bytes[..take]);
                    *block_len += take;
                    bytes = &bytes[take..];
                }
            }
        }
    }

    /// Appends one record (header, then data for data records).
    pub fn push(&mut self, rec: &RecordRef<'_>) {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..2].copy_from_slice(&rec.disk.to_le_bytes());
        h[2] = rec.kind as u8;
        h[4..8].copy_from_slice(&rec.len.to_le_bytes());
        h[8..16].copy_from_slice(&rec.offset.to_le_bytes());
        self.write(&h);
        self.write(rec.data);
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

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Emits the BATCH frame (header + payload) of the records pushed so far and starts a new
    /// batch; `spare` is an old frame whose allocation is reused. Must not be called when empty.
    pub fn finish(&mut self, spare: Vec<u8>, first_seq: Seq, timestamp_ms: u64) -> Result<Vec<u8>> {
        assert!(self.count > 0, "empty batch");
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
                compressor
                    .compress_to_buffer(raw.as_slice(), &mut cursor)
                    .map_err(Error::io("zstd compression of a batch"))?;
                out
            }
            Mode::Store {
                frame,
                block_header,
                block_len,
            } => {
                put_block_header(frame, *block_header, true, *block_len);
                let z = prefix;
                frame[z..z + 4].copy_from_slice(&ZSTD_MAGIC.to_le_bytes());
                frame[z + 4] = ZSTD_FHD_SINGLE_FCS4;
                frame[z + 5..z + 9].copy_from_slice(&(raw_len as u32).to_le_bytes());
                std::mem::replace(frame, spare)
            }
        };
        let compressed = out.len() - prefix;
        let mut w = FRAME_HEADER_LEN;
        let mut put = |bytes: &[u8]| {
            out[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(&[self.group.len() as u8]);
        put(self.group.as_bytes());
        put(&self.generation.to_le_bytes());
        put(&first_seq.0.to_le_bytes());
        put(&self.count.to_le_bytes());
        put(&timestamp_ms.to_le_bytes());
        put(&(raw_len as u32).to_le_bytes());
        put(&(compressed as u32).to_le_bytes());
        debug_assert_eq!(w, prefix);
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

/// One consecutive piece of a [`PartsFrame`].
#[derive(Clone, Copy, Debug)]
enum Piece<'a> {
    /// A range of the frame's own small buffer (headers).
    Meta { start: usize, end: usize },
    /// Record data where it lies.
    Data(&'a [u8]),
}

/// A stored-mode BATCH frame whose record data is not copied: a small buffer of headers plus
/// references to the data, for a vectored write ([`crate::wire::write_all_parts`]).
#[derive(Debug)]
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

/// Builds [`PartsFrame`]s: the same bytes as [`Compression::Store`], without copying large data.
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
    pub fn new(group: &str, generation: u64) -> PartsBuilder<'a> {
        assert!(
            group.len() <= rewind_formats::MAX_NAME_LEN,
            "group name too long"
        );
        let mut b = PartsBuilder {
            group: group.to_string(),
            generation,
            frame: PartsFrame {
                meta: Vec::new(),
                pieces: Vec::new(),
                len: 0,
            },
            block_header: 0,
            block_len: 0,
            count: 0,
            raw_len: 0,
        };
        b.reset();
        b
    }

    fn prefix_len(&self) -> usize {
        FRAME_HEADER_LEN + 1 + self.group.len() + BATCH_FIXED_LEN
    }

    fn reset(&mut self) {
        let prefix = self.prefix_len();
        self.frame = PartsFrame {
            meta: Vec::with_capacity(4096),
            pieces: Vec::new(),
            len: 0,
        };
        self.add_meta(&vec![0; prefix + ZSTD_FRAME_HEADER_LEN]);
        self.block_header = self.frame.meta.len();
        self.add_meta(&[0; ZSTD_BLOCK_HEADER_LEN]);
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
        if self.block_len == ZSTD_MAX_BLOCK {
            put_block_header(
                &mut self.frame.meta,
                self.block_header,
                false,
                self.block_len,
            );
            self.block_header = self.frame.meta.len();
            self.add_meta(&[0; ZSTD_BLOCK_HEADER_LEN]);
            self.block_len = 0;
        }
        ZSTD_MAX_BLOCK - self.block_len
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
    pub fn push(&mut self, rec: &RecordRef<'a>) {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..2].copy_from_slice(&rec.disk.to_le_bytes());
        h[2] = rec.kind as u8;
        h[4..8].copy_from_slice(&rec.len.to_le_bytes());
        h[8..16].copy_from_slice(&rec.offset.to_le_bytes());
        self.write_copy(&h);
        self.write_data(rec.data);
        self.count += 1;
    }

    pub fn record_count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Completes the frame (headers and checksum) and starts a new one.
    pub fn finish(&mut self, first_seq: Seq, timestamp_ms: u64) -> PartsFrame<'a> {
        assert!(self.count > 0, "empty batch");
        let prefix = self.prefix_len();
        let raw_len = self.raw_len as u32;
        let compressed = (self.frame.len - prefix) as u32;
        let count = self.count;
        put_block_header(
            &mut self.frame.meta,
            self.block_header,
            true,
            self.block_len,
        );
        let m = &mut self.frame.meta;
        let mut w = FRAME_HEADER_LEN;
        let mut put = |bytes: &[u8]| {
            m[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(&[self.group.len() as u8]);
        put(self.group.as_bytes());
        put(&self.generation.to_le_bytes());
        put(&first_seq.0.to_le_bytes());
        put(&count.to_le_bytes());
        put(&timestamp_ms.to_le_bytes());
        put(&raw_len.to_le_bytes());
        put(&compressed.to_le_bytes());
        put(&ZSTD_MAGIC.to_le_bytes());
        put(&[ZSTD_FHD_SINGLE_FCS4]);
        put(&raw_len.to_le_bytes());
        let mut frame = std::mem::replace(
            &mut self.frame,
            PartsFrame {
                meta: Vec::new(),
                pieces: Vec::new(),
                len: 0,
            },
        );
        let crc = frame.parts().iter().fold((0u32, 0usize), |(crc, at), p| {
            // Skip the frame header (the first 24 bytes, all in the first meta piece).
            let skip = FRAME_HEADER_LEN.saturating_sub(at).min(p.len());
            (crc32c::crc32c_append(crc, &p[skip..]), at + p.len())
        });
        let header = FrameHeader {
            kind: FrameKind::Batch,
            payload_len: (frame.len - FRAME_HEADER_LEN) as u32,
            payload_crc: crc.0,
        };
        frame.meta[..FRAME_HEADER_LEN].copy_from_slice(&header.encode());
        self.reset();
        frame
    }
}

fn put_block_header(frame: &mut [u8], at: usize, last: bool, len: usize) {
    // bit 0: last block; bits 1-2: type 0 (raw); bits 3..24: size.
    let v = (len as u32) << 3 | u32::from(last);
    frame[at..at + 3].copy_from_slice(&v.to_le_bytes()[..3]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_formats::{decode_frame, Batch, Message, RecordKind};

    fn decode(frame: &[u8]) -> Batch {
        let (kind, payload, used) = decode_frame(frame).unwrap().unwrap();
        assert_eq!(kind, FrameKind::Batch);
        assert_eq!(used, frame.len());
        match Message::decode(kind, payload).unwrap() {
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
}
