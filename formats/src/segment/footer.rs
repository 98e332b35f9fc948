//! The footer of a sealed segment: the segment's chunk list, tags and sorted extent index, so
//! that opening a sealed segment costs two reads (trailer, then body) instead of a chunk walk.
//!
//! It starts at a BLOCK-aligned `footer_offset` right after the last chunk:
//!
//! ```text
//! footer_offset: body | zero padding | trailer (64 bytes) = end of file, a multiple of BLOCK
//! ```
//!
//! Body:
//!
//! | off | size | field        | notes                                                     |
//! |----:|-----:|--------------|-----------------------------------------------------------|
//! |   0 |    4 | magic        | `b"RWJF"` ([`FOOTER_MAGIC`])                              |
//! |   4 |    2 | version      | 1 ([`FOOTER_VERSION`]); 2 if any extent is encoded        |
//! |   6 |    2 | reserved     | 0                                                         |
//! |   8 |    4 | chunk_count  | then chunk_count x 33-byte chunk summaries:               |
//! |     |    8 |   pos        |   file offset of the chunk; BLOCK-aligned, increasing     |
//! |     |    8 |   first_seq  |                                                           |
//! |     |    8 |   last_seq   |                                                           |
//! |     |    8 |   timestamp_ms |                                                         |
//! |     |    1 |   kind       |   [`ChunkKind`]                                           |
//! |     |    4 | tag_count    | then tag_count x [`TagInfo`] (seq u64, kind u8, timestamp_ms u64, name u8 len + bytes) |
//! |     |    8 | extent_count | then extent_count x 32-byte extents, sorted by (disk, offset, seq): |
//! |     |    2 |   disk       |                                                           |
//! |     |    1 |   kind       |   [`RecordKind`]                                          |
//! |     |    1 |   encoding   |   [`Encoding`] (version 2 only; else 0)                   |
//! |     |    4 |   len        |                                                           |
//! |     |    8 |   offset     |   on the disk                                             |
//! |     |    8 |   seq        |                                                           |
//! |     |    8 |   data_pos   |   absolute file offset of the data; 0 for zero/trim       |
//!
//! Trailer (the last 64 bytes of the file):
//!
//! | off | size | field         | notes                                                    |
//! |----:|-----:|---------------|----------------------------------------------------------|
//! |   0 |    8 | magic         | `b"RWJTRAIL"` ([`TRAILER_MAGIC`])                        |
//! |   8 |    2 | version       | 1 ([`TRAILER_VERSION`])                                  |
//! |  10 |    2 | reserved      | 0                                                        |
//! |  12 |    4 | reserved      | 0                                                        |
//! |  16 |    8 | footer_offset | where the body starts; BLOCK-aligned                     |
//! |  24 |    8 | body_len      |                                                          |
//! |  32 |    4 | body_crc      | crc32c(body)                                             |
//! |  36 |   24 | reserved      | 0                                                        |
//! |  60 |    4 | trailer_crc   | crc32c(bytes 0..60)                                      |

use crate::bytes::{le_u16, le_u32, le_u64, Reader, Writer};
use crate::records::{check_range, RecordKind};
use crate::tag::{TagInfo, TAG_MIN_LEN};
use crate::{
    round_up_block, DecodeError, Seq, BLOCK, FOOTER_MAGIC, FOOTER_VERSION, TRAILER_MAGIC,
    TRAILER_VERSION,
};

use super::chunk::ChunkKind;
use super::encoding::Encoding;

/// Footer version of a footer with at least one encoded extent.
pub const FOOTER_VERSION_ENCODED: u16 = 2;

/// Bytes of the trailer.
pub const TRAILER_LEN: usize = 64;
/// Largest footer body a reader accepts (bounds the buffer it allocates for the body).
pub const MAX_FOOTER_BODY_LEN: u64 = 1 << 30;

const CHUNK_SUMMARY_LEN: usize = 33;
const EXTENT_LEN: usize = 32;
/// Magic, version, reserved and the three counts of an empty footer.
const MIN_BODY_LEN: u64 = 4 + 2 + 2 + 4 + 4 + 8;

/// One chunk of a sealed segment, as the footer lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSummary {
    pub pos: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub timestamp_ms: u64,
    pub kind: ChunkKind,
}

/// One record of a sealed segment, as the footer's extent index lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FooterExtent {
    pub disk: u16,
    pub kind: RecordKind,
    pub offset: u64,
    pub len: u32,
    pub seq: Seq,
    /// Absolute file offset of the data (BLOCK-aligned); 0 for zero/trim.
    pub data_pos: u64,
    /// How the data is stored (raw for zero/trim).
    pub encoding: Encoding,
}

/// A sealed segment's footer. `extents` must be sorted by (disk, offset, seq) (see
/// [`SegmentFooter::sort_extents`]); chunks by position, tags in seq order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SegmentFooter {
    pub chunks: Vec<ChunkSummary>,
    pub tags: Vec<TagInfo>,
    pub extents: Vec<FooterExtent>,
}

/// A decoded trailer: where the footer body is and its crc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub footer_offset: u64,
    pub body_len: u64,
    pub body_crc: u32,
}

impl SegmentFooter {
    /// Sorts the extents by (disk, offset, seq), the order the footer requires.
    pub fn sort_extents(&mut self) {
        self.extents.sort_by_key(|e| (e.disk, e.offset, e.seq));
    }

    /// The encoded body alone (no padding or trailer).
    ///
    /// # Panics
    /// If there are more than u32::MAX chunks or tags, or a tag name is over 255 bytes.
    pub fn encode_body(&self) -> Vec<u8> {
        let size = MIN_BODY_LEN as usize
            + self.chunks.len() * CHUNK_SUMMARY_LEN
            + self.tags.iter().map(TagInfo::encoded_len).sum::<usize>()
            + self.extents.len() * EXTENT_LEN;
        let mut w = Writer::with_capacity(size);
        w.u32(FOOTER_MAGIC);
        let encoded = self.extents.iter().any(|e| e.encoding != Encoding::Raw);
        w.u16(if encoded {
            FOOTER_VERSION_ENCODED
        } else {
            FOOTER_VERSION
        });
        w.u16(0);
        w.u32(u32::try_from(self.chunks.len()).expect("chunk count over u32"));
        for c in &self.chunks {
            w.u64(c.pos);
            w.u64(c.first_seq.0);
            w.u64(c.last_seq.0);
            w.u64(c.timestamp_ms);
            w.u8(c.kind.as_u16() as u8);
        }
        w.u32(u32::try_from(self.tags.len()).expect("tag count over u32"));
        for t in &self.tags {
            t.write(&mut w);
        }
        w.u64(self.extents.len() as u64);
        for e in &self.extents {
            w.u16(e.disk);
            w.u8(e.kind.as_u8());
            w.u8(e.encoding.as_u8());
            w.u32(e.len);
            w.u64(e.offset);
            w.u64(e.seq.0);
            w.u64(e.data_pos);
        }
        debug_assert_eq!(w.len(), size);
        w.into_vec()
    }

    /// Body + zero padding + trailer, a multiple of BLOCK; `footer_offset` is the file offset
    /// it will be written at.
    ///
    /// # Panics
    /// If `footer_offset` is not BLOCK-aligned, and as [`SegmentFooter::encode_body`].
    pub fn encode(&self, footer_offset: u64) -> Vec<u8> {
        assert!(
            footer_offset.is_multiple_of(BLOCK as u64),
            "footer_offset {footer_offset} is not BLOCK-aligned"
        );
        let mut out = self.encode_body();
        let trailer = Trailer {
            footer_offset,
            body_len: out.len() as u64,
            body_crc: crc32c::crc32c(&out),
        };
        let total = (out.len() + TRAILER_LEN).div_ceil(BLOCK) * BLOCK;
        out.resize(total - TRAILER_LEN, 0);
        out.extend_from_slice(&trailer.encode());
        out
    }

    /// Decodes a trailer: the last [`TRAILER_LEN`] bytes of `trailer` (pass exactly the last 64
    /// bytes of the file, or any tail of it that ends there). Checks magic, version, crc,
    /// reserved fields, alignment, the body_len cap and that the footer fits:
    /// `footer_offset + body_len + TRAILER_LEN <= file_len` (and a sealed file is a whole number
    /// of BLOCKs).
    pub fn decode_trailer(trailer: &[u8], file_len: u64) -> Result<Trailer, DecodeError> {
        let Some(b) = trailer.last_chunk::<TRAILER_LEN>() else {
            return Err(DecodeError::Truncated {
                need: TRAILER_LEN,
                have: trailer.len(),
            });
        };
        let magic = le_u64(b, 0);
        if magic != TRAILER_MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = le_u16(b, 8);
        if version != TRAILER_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&b[..60]) != le_u32(b, 60) {
            return Err(DecodeError::HeaderChecksum);
        }
        if le_u16(b, 10) != 0 || le_u32(b, 12) != 0 || b[36..60].iter().any(|&x| x != 0) {
            return Err(DecodeError::invalid(
                "segment trailer",
                "reserved bytes are not zero",
            ));
        }
        let t = Trailer {
            footer_offset: le_u64(b, 16),
            body_len: le_u64(b, 24),
            body_crc: le_u32(b, 32),
        };
        if t.body_len > MAX_FOOTER_BODY_LEN {
            return Err(DecodeError::too_large(
                "footer body_len",
                t.body_len,
                MAX_FOOTER_BODY_LEN,
            ));
        }
        if t.body_len < MIN_BODY_LEN {
            return Err(DecodeError::invalid(
                "footer body_len",
                format!("{} bytes, less than an empty footer", t.body_len),
            ));
        }
        if t.footer_offset < BLOCK as u64 || !t.footer_offset.is_multiple_of(BLOCK as u64) {
            return Err(DecodeError::invalid(
                "footer_offset",
                format!(
                    "{} is not a BLOCK-aligned offset after the header",
                    t.footer_offset
                ),
            ));
        }
        let end = t
            .footer_offset
            .checked_add(t.body_len)
            .and_then(|e| e.checked_add(TRAILER_LEN as u64));
        if end.is_none_or(|e| e > file_len) || !file_len.is_multiple_of(BLOCK as u64) {
            return Err(DecodeError::invalid(
                "footer_offset",
                format!(
                    "footer at {} of {} bytes + trailer does not fit a {file_len}-byte file",
                    t.footer_offset, t.body_len
                ),
            ));
        }
        Ok(t)
    }

    /// Decodes the body (exactly `trailer.body_len` bytes read at `trailer.footer_offset`):
    /// checks its crc against the trailer, then every count against the bytes left, every entry,
    /// and that positions lie before the footer and extents are sorted.
    pub fn decode_body(body: &[u8], trailer: &Trailer) -> Result<SegmentFooter, DecodeError> {
        let want = usize::try_from(trailer.body_len).unwrap_or(usize::MAX);
        if body.len() < want {
            return Err(DecodeError::Truncated {
                need: want,
                have: body.len(),
            });
        }
        if body.len() > want {
            return Err(DecodeError::invalid(
                "footer body",
                format!("{} bytes, trailer says {want}", body.len()),
            ));
        }
        if crc32c::crc32c(body) != trailer.body_crc {
            return Err(DecodeError::PayloadChecksum);
        }
        let mut r = Reader::new(body);
        let magic = r.u32()?;
        if magic != FOOTER_MAGIC {
            return Err(DecodeError::BadMagic {
                found: u64::from(magic),
            });
        }
        let version = r.u16()?;
        if version != FOOTER_VERSION && version != FOOTER_VERSION_ENCODED {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if r.u16()? != 0 {
            return Err(DecodeError::invalid(
                "footer body",
                "reserved bytes 6..8 are not zero",
            ));
        }
        let limit = trailer.footer_offset;

        let n = u64::from(r.u32()?);
        let n = r.count("footer chunks", n, CHUNK_SUMMARY_LEN)?;
        let mut chunks = Vec::with_capacity(n);
        for i in 0..n {
            let c = read_chunk_summary(&mut r)?;
            let after_prev = chunks.last().is_none_or(|p: &ChunkSummary| c.pos > p.pos);
            if c.pos < BLOCK as u64 || c.pos % BLOCK as u64 != 0 || c.pos >= limit || !after_prev {
                return Err(DecodeError::invalid(
                    "footer chunk",
                    format!("chunk {i}: position {} out of order or place", c.pos),
                ));
            }
            chunks.push(c);
        }

        let n = u64::from(r.u32()?);
        let n = r.count("footer tags", n, TAG_MIN_LEN)?;
        let mut tags = Vec::with_capacity(n);
        for _ in 0..n {
            tags.push(TagInfo::read(&mut r)?);
        }

        let n = r.u64()?;
        let n = r.count("footer extents", n, EXTENT_LEN)?;
        let mut extents = Vec::with_capacity(n);
        for i in 0..n {
            let e = read_extent(&mut r, i, limit, version)?;
            if let Some(p) = extents.last() {
                let p: &FooterExtent = p;
                if (p.disk, p.offset, p.seq) >= (e.disk, e.offset, e.seq) {
                    return Err(DecodeError::invalid(
                        "footer extents",
                        format!("extent {i} is not sorted by (disk, offset, seq)"),
                    ));
                }
            }
            extents.push(e);
        }
        r.finish("footer body")?;
        Ok(SegmentFooter {
            chunks,
            tags,
            extents,
        })
    }
}

impl Trailer {
    /// The 64 trailer bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(&TRAILER_MAGIC.to_le_bytes());
        b[8..10].copy_from_slice(&TRAILER_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.footer_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.body_len.to_le_bytes());
        b[32..36].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

fn read_chunk_summary(r: &mut Reader<'_>) -> Result<ChunkSummary, DecodeError> {
    let pos = r.u64()?;
    let first_seq = Seq(r.u64()?);
    let last_seq = Seq(r.u64()?);
    let timestamp_ms = r.u64()?;
    let kind_raw = r.u8()?;
    let kind = ChunkKind::from_u16(u16::from(kind_raw))
        .ok_or(DecodeError::UnknownKind(u16::from(kind_raw)))?;
    if first_seq.0 == 0 || last_seq < first_seq {
        return Err(DecodeError::invalid(
            "footer chunk",
            format!("at {pos}: first_seq {first_seq}, last_seq {last_seq}"),
        ));
    }
    Ok(ChunkSummary {
        pos,
        first_seq,
        last_seq,
        timestamp_ms,
        kind,
    })
}

fn read_extent(
    r: &mut Reader<'_>,
    i: usize,
    limit: u64,
    version: u16,
) -> Result<FooterExtent, DecodeError> {
    let disk = r.u16()?;
    let kind = RecordKind::decode("footer extent", r.u8()?)?;
    let reserved = r.u8()?;
    let len = r.u32()?;
    let offset = r.u64()?;
    let seq = Seq(r.u64()?);
    let data_pos = r.u64()?;
    if version == FOOTER_VERSION && reserved != 0 {
        return Err(DecodeError::invalid(
            "footer extent",
            format!("extent {i}: reserved byte is {reserved} in a version {version} footer"),
        ));
    }
    let encoding = Encoding::decode("footer extent", reserved)?;
    if kind != RecordKind::Data && encoding != Encoding::Raw {
        return Err(DecodeError::invalid(
            "footer extent",
            format!("extent {i}: {kind:?} record with an encoding"),
        ));
    }
    check_range("footer extent", format_args!("extent {i}"), offset, len)?;
    if seq.0 == 0 {
        return Err(DecodeError::invalid(
            "footer extent",
            format!("extent {i}: seq 0"),
        ));
    }
    let placed = match kind {
        RecordKind::Data => {
            // An encoded record takes at least a BLOCK; its table says how much more.
            let stored = match encoding {
                Encoding::Raw => u64::from(len),
                Encoding::Zstd => BLOCK as u64,
            };
            let end = round_up_block(stored).and_then(|l| data_pos.checked_add(l));
            data_pos >= BLOCK as u64
                && data_pos % BLOCK as u64 == 0
                && end.is_some_and(|e| e <= limit)
        }
        RecordKind::Zero | RecordKind::Trim => data_pos == 0,
    };
    if !placed {
        return Err(DecodeError::invalid(
            "footer extent",
            format!("extent {i}: {kind:?} data_pos {data_pos} (footer at {limit})"),
        ));
    }
    Ok(FooterExtent {
        disk,
        kind,
        offset,
        len,
        seq,
        data_pos,
        encoding,
    })
}

#[cfg(test)]
mod tests;
