//! Chunks: what a journal segment holds after its header, one per appended batch or tag.
//!
//! A chunk is a header region (a fixed 64-byte prefix + entries, zero padded to a multiple of
//! BLOCK), then each data record's bytes, each zero padded to a multiple of BLOCK, so that a view
//! can read a record's data in place with O_DIRECT. Chunks start BLOCK-aligned.
//!
//! Prefix:
//!
//! | off | size | field        | notes                                                        |
//! |----:|-----:|--------------|--------------------------------------------------------------|
//! |   0 |    4 | magic        | `b"RWJC"` ([`CHUNK_MAGIC`])                                  |
//! |   4 |    2 | version      | 1 ([`CHUNK_VERSION`]); 2 if any record is encoded            |
//! |   6 |    2 | kind         | [`ChunkKind`]: 1 records, 2 tag                              |
//! |   8 |    4 | header_len   | prefix + entries, before padding                             |
//! |  12 |    4 | entry_count  | records: number of entries; tag: 1                           |
//! |  16 |    8 | first_seq    | >= 1                                                         |
//! |  24 |    8 | last_seq     | records: first_seq + entry_count - 1; tag: = first_seq       |
//! |  32 |    8 | timestamp_ms | the batch's (or tag's arrival) wall clock                    |
//! |  40 |    8 | generation   | the group's generation                                       |
//! |  48 |    8 | total_len    | whole chunk incl. padding and data; multiple of BLOCK        |
//! |  56 |    4 | reserved     | 0                                                            |
//! |  60 |    4 | header_crc   | crc32c(prefix bytes 0..60 ++ entry bytes 64..header_len)     |
//!
//! Records entry (32 bytes each, entry i has seq first_seq + i):
//!
//! | off | size | field           | notes                                                     |
//! |----:|-----:|-----------------|-----------------------------------------------------------|
//! |   0 |    8 | seq             |                                                           |
//! |   8 |    2 | disk            | index into the group's disk list                          |
//! |  10 |    1 | kind            | [`RecordKind`]                                            |
//! |  11 |    1 | encoding        | [`Encoding`]: 0 raw, 1 zstd (version 2 only; else 0)      |
//! |  12 |    4 | len             | multiple of SECTOR, 1..=MAX_RECORD_LEN                    |
//! |  16 |    8 | offset          | multiple of SECTOR                                        |
//! |  24 |    4 | data_crc        | crc32c(data as stored); 0 for zero/trim                   |
//! |  28 |    4 | data_pos_blocks | data position from chunk start, in BLOCKs; 0 for zero/trim|
//!
//! Tag entry: one [`TagInfo`] (seq u64, kind u8, timestamp_ms u64, name u8 len + bytes);
//! `header_len` = 64 + 18 + name length, `total_len` = BLOCK.
//!
//! A zstd record's data region is a frame table and independent frames (see [`super::encoding`]);
//! its stored length follows from its table, so the header bounds it by the next region.
//!
//! The header crc covers the entries so that one read of the header region tells whether the
//! chunk's index is whole; each record's data has its own crc so that a torn data block is
//! found without trusting anything else.

use crate::bytes::{le_u16, le_u32, le_u64, Reader};
use crate::records::{check_data_matches, check_range, RecordKind, RecordRef};
use crate::tag::{tag_encoded_len, TagInfo, TAG_MIN_LEN};
use crate::{
    round_up_block, DecodeError, Seq, BLOCK, CHUNK_MAGIC, CHUNK_VERSION, MAX_BATCH_RECORDS,
    MAX_NAME_LEN,
};

use super::encoding::{verify_encoded, Encoding};
use super::footer::{ChunkSummary, FooterExtent};

/// Chunk version of a chunk with at least one encoded record (a version-1 reader refuses it
/// instead of reading frames as plain bytes).
pub const CHUNK_VERSION_ENCODED: u16 = 2;

/// Bytes of a chunk prefix.
pub const CHUNK_PREFIX_LEN: usize = 64;
/// Bytes of one records entry.
pub const CHUNK_RECORD_ENTRY_LEN: usize = 32;
/// Largest header_len a reader accepts: a prefix and [`MAX_BATCH_RECORDS`] entries.
pub const MAX_CHUNK_HEADER_LEN: u32 = CHUNK_PREFIX_LEN as u32 + 32 * MAX_BATCH_RECORDS;
/// Largest total_len a reader accepts. A batch at its caps (64 MiB of records, each padded to
/// a BLOCK) needs well under this, so one batch always fits one chunk.
pub const MAX_CHUNK_LEN: u64 = 1 << 30;

const CRC_OFF: usize = 60;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    Records = 1,
    Tag = 2,
}

impl ChunkKind {
    /// The on-disk value (u16 in the prefix, u8 in the footer).
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The kind with this value, if this version knows it.
    pub fn from_u16(v: u16) -> Option<ChunkKind> {
        match v {
            1 => Some(ChunkKind::Records),
            2 => Some(ChunkKind::Tag),
            _ => None,
        }
    }
}

/// One record entry of a records chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    pub seq: Seq,
    pub disk: u16,
    pub kind: RecordKind,
    pub offset: u64,
    pub len: u32,
    pub data_crc: u32,
    /// Bytes from chunk start, multiple of BLOCK (0 for zero/trim).
    pub data_pos: u64,
    /// How the data is stored (raw for zero/trim).
    pub encoding: Encoding,
}

impl ChunkRecord {
    /// The footer extent for this record, in a chunk that starts at file offset `chunk_pos`.
    pub fn extent(&self, chunk_pos: u64) -> FooterExtent {
        FooterExtent {
            disk: self.disk,
            kind: self.kind,
            offset: self.offset,
            len: self.len,
            seq: self.seq,
            encoding: self.encoding,
            data_pos: match self.kind {
                RecordKind::Data => chunk_pos + self.data_pos,
                RecordKind::Zero | RecordKind::Trim => 0,
            },
        }
    }
}

/// A decoded, verified chunk header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub kind: ChunkKind,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub timestamp_ms: u64,
    pub generation: u64,
    pub total_len: u64,
    pub header_len_padded: u64,
    /// The entries of a records chunk (empty for a tag chunk).
    pub records: Vec<ChunkRecord>,
    /// The tag of a tag chunk (None for a records chunk).
    pub tag: Option<TagInfo>,
}

impl ChunkHeader {
    /// The footer's summary of this chunk, which starts at file offset `pos`.
    pub fn summary(&self, pos: u64) -> ChunkSummary {
        ChunkSummary {
            pos,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            timestamp_ms: self.timestamp_ms,
            kind: self.kind,
        }
    }
}

/// What the 64-byte prefix alone tells: enough to read the rest of the header region
/// (`header_len` bytes) and to skip to the next chunk (`total_len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPrefix {
    pub version: u16,
    pub kind: ChunkKind,
    pub header_len: u32,
    pub total_len: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
}

/// Decodes the 64-byte prefix (the first 64 bytes of `prefix`): checks magic, version, kind,
/// the caps and that entry_count, header_len, the seqs and total_len agree. Does NOT check the
/// crc (it covers the entries, which the caller reads next, `header_len` bytes in all).
pub fn peek_chunk(prefix: &[u8]) -> Result<ChunkPrefix, DecodeError> {
    let Some(b) = prefix.get(..CHUNK_PREFIX_LEN) else {
        return Err(DecodeError::Truncated {
            need: CHUNK_PREFIX_LEN,
            have: prefix.len(),
        });
    };
    let magic = le_u32(b, 0);
    if magic != CHUNK_MAGIC {
        return Err(DecodeError::BadMagic {
            found: u64::from(magic),
        });
    }
    let version = le_u16(b, 4);
    if version != CHUNK_VERSION && version != CHUNK_VERSION_ENCODED {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind_raw = le_u16(b, 6);
    let kind = ChunkKind::from_u16(kind_raw).ok_or(DecodeError::UnknownKind(kind_raw))?;
    let header_len = le_u32(b, 8);
    let entry_count = le_u32(b, 12);
    let first_seq = Seq(le_u64(b, 16));
    let last_seq = Seq(le_u64(b, 24));
    let total_len = le_u64(b, 48);
    if le_u32(b, 56) != 0 {
        return Err(DecodeError::invalid(
            "chunk prefix",
            "reserved bytes 56..60 are not zero",
        ));
    }
    if header_len > MAX_CHUNK_HEADER_LEN {
        return Err(DecodeError::too_large(
            "chunk header_len",
            u64::from(header_len),
            u64::from(MAX_CHUNK_HEADER_LEN),
        ));
    }
    if total_len > MAX_CHUNK_LEN {
        return Err(DecodeError::too_large(
            "chunk total_len",
            total_len,
            MAX_CHUNK_LEN,
        ));
    }
    if first_seq.0 == 0 || last_seq < first_seq {
        return Err(DecodeError::invalid(
            "chunk seqs",
            format!("first_seq {first_seq}, last_seq {last_seq}"),
        ));
    }
    match kind {
        ChunkKind::Records => {
            if entry_count == 0 || entry_count > MAX_BATCH_RECORDS {
                return Err(DecodeError::invalid(
                    "chunk entry_count",
                    format!("{entry_count} records, not in 1..={MAX_BATCH_RECORDS}"),
                ));
            }
            let want =
                CHUNK_PREFIX_LEN as u64 + CHUNK_RECORD_ENTRY_LEN as u64 * u64::from(entry_count);
            if u64::from(header_len) != want {
                return Err(DecodeError::invalid(
                    "chunk header_len",
                    format!("{header_len}, but {entry_count} records need {want}"),
                ));
            }
            if last_seq.0 - first_seq.0 != u64::from(entry_count) - 1 {
                return Err(DecodeError::invalid(
                    "chunk seqs",
                    format!("{first_seq}..={last_seq} for {entry_count} records"),
                ));
            }
        }
        ChunkKind::Tag => {
            let min = (CHUNK_PREFIX_LEN + TAG_MIN_LEN) as u32;
            let max = (CHUNK_PREFIX_LEN + tag_encoded_len(MAX_NAME_LEN)) as u32;
            if entry_count != 1 || !(min..=max).contains(&header_len) {
                return Err(DecodeError::invalid(
                    "tag chunk",
                    format!("entry_count {entry_count}, header_len {header_len}"),
                ));
            }
            if first_seq != last_seq {
                return Err(DecodeError::invalid(
                    "tag chunk seqs",
                    format!("first_seq {first_seq} != last_seq {last_seq}"),
                ));
            }
        }
    }
    // header_len <= MAX_CHUNK_HEADER_LEN, so this cannot overflow.
    let padded = round_up_block(u64::from(header_len)).unwrap_or(u64::MAX);
    let ok_len = match kind {
        ChunkKind::Records => total_len >= padded,
        ChunkKind::Tag => total_len == padded,
    };
    if !ok_len || !total_len.is_multiple_of(BLOCK as u64) {
        return Err(DecodeError::invalid(
            "chunk total_len",
            format!("{total_len} for a header of {header_len} bytes"),
        ));
    }
    Ok(ChunkPrefix {
        version,
        kind,
        header_len,
        total_len,
        first_seq,
        last_seq,
    })
}

/// Decodes a whole chunk header (`buf` holds at least `header_len` bytes from the chunk start):
/// verifies the header crc, then every entry: seqs consecutive from first_seq to last_seq,
/// record ranges valid, each data region BLOCK-aligned, after the header, inside total_len and
/// after the previous one.
pub fn decode_chunk_header(buf: &[u8]) -> Result<ChunkHeader, DecodeError> {
    let p = peek_chunk(buf)?;
    let header_len = p.header_len as usize;
    let Some(head) = buf.get(..header_len) else {
        return Err(DecodeError::Truncated {
            need: header_len,
            have: buf.len(),
        });
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..CRC_OFF]), &head[CHUNK_PREFIX_LEN..]);
    if crc != le_u32(head, CRC_OFF) {
        return Err(DecodeError::HeaderChecksum);
    }
    let header_len_padded = round_up_block(header_len as u64).unwrap_or(u64::MAX);
    let mut r = Reader::new(&head[CHUNK_PREFIX_LEN..]);
    let mut records = Vec::new();
    let mut tag = None;
    match p.kind {
        ChunkKind::Records => {
            // peek_chunk checked that the entries fill header_len exactly.
            let n = r.count(
                "chunk entries",
                p.last_seq.0 - p.first_seq.0 + 1,
                CHUNK_RECORD_ENTRY_LEN,
            )?;
            records.reserve_exact(n);
            let mut next_free = header_len_padded;
            for i in 0..n as u64 {
                let rec = read_entry(&mut r, Seq(p.first_seq.0 + i), p.version)?;
                if rec.kind == RecordKind::Data {
                    // An encoded region's length is in its table: here it takes at least a
                    // BLOCK, and verify_chunk_data bounds it by the next region.
                    let stored = match rec.encoding {
                        Encoding::Raw => u64::from(rec.len),
                        Encoding::Zstd => BLOCK as u64,
                    };
                    // len <= MAX_RECORD_LEN and data_pos <= u32::MAX * BLOCK: no overflow.
                    let end = rec.data_pos + round_up_block(stored).unwrap_or(u64::MAX);
                    if rec.data_pos < next_free || end > p.total_len {
                        return Err(DecodeError::invalid(
                            "chunk entry",
                            format!(
                                "seq {}: data at {}..{end} is not inside {next_free}..{}",
                                rec.seq, rec.data_pos, p.total_len
                            ),
                        ));
                    }
                    next_free = end;
                }
                records.push(rec);
            }
        }
        ChunkKind::Tag => {
            let t = TagInfo::read(&mut r)?;
            if t.seq != p.first_seq {
                return Err(DecodeError::invalid(
                    "tag chunk",
                    format!("tag seq {} but chunk seq {}", t.seq, p.first_seq),
                ));
            }
            tag = Some(t);
        }
    }
    r.finish("chunk header")?;
    Ok(ChunkHeader {
        kind: p.kind,
        first_seq: p.first_seq,
        last_seq: p.last_seq,
        timestamp_ms: le_u64(head, 32),
        generation: le_u64(head, 40),
        total_len: p.total_len,
        header_len_padded,
        records,
        tag,
    })
}

fn read_entry(r: &mut Reader<'_>, want_seq: Seq, version: u16) -> Result<ChunkRecord, DecodeError> {
    let seq = Seq(r.u64()?);
    let disk = r.u16()?;
    let kind = RecordKind::decode("chunk entry", r.u8()?)?;
    let reserved = r.u8()?;
    let len = r.u32()?;
    let offset = r.u64()?;
    let data_crc = r.u32()?;
    let data_pos_blocks = r.u32()?;
    if seq != want_seq {
        return Err(DecodeError::invalid(
            "chunk entry",
            format!("seq {seq} where {want_seq} was due"),
        ));
    }
    if version == CHUNK_VERSION && reserved != 0 {
        return Err(DecodeError::invalid(
            "chunk entry",
            format!("seq {seq}: reserved byte is {reserved} in a version {version} chunk"),
        ));
    }
    let encoding = Encoding::decode("chunk entry", reserved)?;
    check_range("chunk entry", format_args!("seq {seq}"), offset, len)?;
    if kind != RecordKind::Data
        && (data_crc != 0 || data_pos_blocks != 0 || encoding != Encoding::Raw)
    {
        return Err(DecodeError::invalid(
            "chunk entry",
            format!("seq {seq}: {kind:?} record with data_crc/data_pos/encoding set"),
        ));
    }
    Ok(ChunkRecord {
        seq,
        disk,
        kind,
        offset,
        len,
        data_crc,
        data_pos: u64::from(data_pos_blocks) * BLOCK as u64,
        encoding,
    })
}

fn header_len_for(n: usize) -> usize {
    CHUNK_PREFIX_LEN + CHUNK_RECORD_ENTRY_LEN * n
}

fn padded(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Length of the chunk that will hold these records (header padded + each data padded).
pub fn records_chunk_len(records: &[RecordRef<'_>]) -> usize {
    records_chunk_len_with(records, &[])
}

/// [`records_chunk_len`] where `encoded[i]`, if given, is record i's table ++ frames (from
/// [`super::encoding::encode_record`]); `encoded` is empty (all raw) or one per record.
pub fn records_chunk_len_with(records: &[RecordRef<'_>], encoded: &[Option<&[u8]>]) -> usize {
    let data: usize = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RecordKind::Data)
        .map(|(i, r)| match encoded.get(i).copied().flatten() {
            Some(e) => padded(e.len()),
            None => padded(r.len as usize),
        })
        .sum();
    padded(header_len_for(records.len())) + data
}

/// Fills `out` (exactly [`records_chunk_len`] bytes, any alignment, any prior content: every
/// padding byte is written as zero here) with a records chunk; seqs are `first_seq..` in order.
/// Returns the header, as [`decode_chunk_header`] would read it back.
///
/// # Panics
/// If `out` has the wrong length, `records` is empty or holds more than
/// [`MAX_BATCH_RECORDS`], `first_seq` is 0 or the seqs overflow, the chunk would exceed
/// [`MAX_CHUNK_LEN`], or a record's data does not match its kind and len: no reader would accept
/// such a chunk, so writing one is a bug.
pub fn write_records_chunk(
    out: &mut [u8],
    first_seq: Seq,
    timestamp_ms: u64,
    generation: u64,
    records: &[RecordRef<'_>],
) -> ChunkHeader {
    write_records_chunk_with(out, first_seq, timestamp_ms, generation, records, &[])
}

/// [`write_records_chunk`] with encoded records: `encoded` as in [`records_chunk_len_with`]
/// (`out` is that long). The chunk is version 2 if any record is encoded, else version 1.
///
/// # Panics
/// As [`write_records_chunk`], and if `encoded` is neither empty nor one per record, or names
/// a record that is not data. An encoded data record's `data` may be empty (its plain bytes
/// are not needed to store it).
pub fn write_records_chunk_with(
    out: &mut [u8],
    first_seq: Seq,
    timestamp_ms: u64,
    generation: u64,
    records: &[RecordRef<'_>],
    encoded: &[Option<&[u8]>],
) -> ChunkHeader {
    write_records_chunk_with_crcs(
        out,
        first_seq,
        timestamp_ms,
        generation,
        records,
        encoded,
        &[],
    )
}

/// [`write_records_chunk_with`] where the caller already has the crc32c of some encoded
/// records (a target that checked what an agent sent, see `crate::framed`): `crcs[i]`, if any,
/// is taken as `encoded[i]`'s instead of computing it again over every byte.
///
/// # Panics
/// As [`write_records_chunk_with`], and if `crcs` is neither empty nor one per record, or gives
/// a crc for a record that is not encoded. In debug builds, if a given crc is wrong.
pub fn write_records_chunk_with_crcs(
    out: &mut [u8],
    first_seq: Seq,
    timestamp_ms: u64,
    generation: u64,
    records: &[RecordRef<'_>],
    encoded: &[Option<&[u8]>],
    crcs: &[Option<u32>],
) -> ChunkHeader {
    let n = records.len();
    assert!(
        encoded.is_empty() || encoded.len() == n,
        "encoded holds {} entries for {n} records",
        encoded.len()
    );
    assert!(
        crcs.is_empty() || crcs.len() == n,
        "crcs holds {} entries for {n} records",
        crcs.len()
    );
    assert!(
        (1..=MAX_BATCH_RECORDS as usize).contains(&n),
        "a records chunk holds 1..={MAX_BATCH_RECORDS} records, not {n}"
    );
    assert!(first_seq.0 >= 1, "seqs start at 1");
    let last_seq = Seq(first_seq
        .0
        .checked_add(n as u64 - 1)
        .expect("chunk seqs overflow u64"));
    let total_len = records_chunk_len_with(records, encoded);
    assert_eq!(
        out.len(),
        total_len,
        "output buffer is not records_chunk_len"
    );
    assert!(
        total_len as u64 <= MAX_CHUNK_LEN,
        "chunk of {total_len} bytes is over MAX_CHUNK_LEN"
    );
    let header_len = header_len_for(n);
    let header_len_padded = padded(header_len);

    // Entries, and each data record's bytes, zero padded.
    let mut entries = Vec::with_capacity(n);
    let mut pos = header_len_padded;
    for (i, rec) in records.iter().enumerate() {
        let seq = Seq(first_seq.0 + i as u64);
        let enc = encoded.get(i).copied().flatten();
        let known_crc = crcs.get(i).copied().flatten();
        assert!(
            known_crc.is_none() || enc.is_some(),
            "record {i} has a crc given but is not encoded"
        );
        // An encoded record may come without its plain bytes (a target storing what an agent
        // encoded, see `crate::framed`): only its encoding is written.
        if enc.is_none() || !rec.data.is_empty() {
            check_data_matches(i, rec);
        }
        assert!(
            enc.is_none() || rec.kind == RecordKind::Data,
            "record {i} is encoded but holds no data"
        );
        let (data_crc, data_pos, encoding) = if rec.kind == RecordKind::Data {
            let (stored, encoding) = match enc {
                Some(e) => (e, Encoding::Zstd),
                None => (rec.data, Encoding::Raw),
            };
            let end = pos + stored.len();
            let pad_end = pos + padded(stored.len());
            out[pos..end].copy_from_slice(stored);
            out[end..pad_end].fill(0);
            let at = pos;
            pos = pad_end;
            let crc = match known_crc {
                Some(c) => {
                    debug_assert_eq!(c, crc32c::crc32c(stored), "record {i}'s given crc");
                    c
                }
                None => crc32c::crc32c(stored),
            };
            (crc, at as u64, encoding)
        } else {
            (0, 0, Encoding::Raw)
        };
        entries.push(ChunkRecord {
            seq,
            disk: rec.disk,
            kind: rec.kind,
            offset: rec.offset,
            len: rec.len,
            data_crc,
            data_pos,
            encoding,
        });
    }
    debug_assert_eq!(pos, total_len);

    for (i, e) in entries.iter().enumerate() {
        let b = &mut out[CHUNK_PREFIX_LEN + i * CHUNK_RECORD_ENTRY_LEN..][..CHUNK_RECORD_ENTRY_LEN];
        b[0..8].copy_from_slice(&e.seq.0.to_le_bytes());
        b[8..10].copy_from_slice(&e.disk.to_le_bytes());
        b[10] = e.kind.as_u8();
        b[11] = e.encoding.as_u8();
        b[12..16].copy_from_slice(&e.len.to_le_bytes());
        b[16..24].copy_from_slice(&e.offset.to_le_bytes());
        b[24..28].copy_from_slice(&e.data_crc.to_le_bytes());
        // data_pos < MAX_CHUNK_LEN, so the block count fits u32.
        let blocks = (e.data_pos / BLOCK as u64) as u32;
        b[28..32].copy_from_slice(&blocks.to_le_bytes());
    }
    out[header_len..header_len_padded].fill(0);
    let version = if entries.iter().any(|e| e.encoding != Encoding::Raw) {
        CHUNK_VERSION_ENCODED
    } else {
        CHUNK_VERSION
    };
    let header = ChunkHeader {
        kind: ChunkKind::Records,
        first_seq,
        last_seq,
        timestamp_ms,
        generation,
        total_len: total_len as u64,
        header_len_padded: header_len_padded as u64,
        records: entries,
        tag: None,
    };
    write_prefix(&mut out[..header_len], &header, n as u32, version);
    header
}

/// Length of the tag chunk for `tag` (always one BLOCK: a name is at most 255 bytes).
pub fn tag_chunk_len(tag: &TagInfo) -> usize {
    padded(CHUNK_PREFIX_LEN + tag.encoded_len())
}

/// Fills `out` (exactly [`tag_chunk_len`] bytes) with a tag chunk; first_seq = last_seq = the
/// tag's seq. Returns the header, as [`decode_chunk_header`] would read it back.
///
/// # Panics
/// If `out` has the wrong length, the tag's seq is 0 or its name is over 255 bytes.
pub fn write_tag_chunk(
    out: &mut [u8],
    timestamp_ms: u64,
    generation: u64,
    tag: &TagInfo,
) -> ChunkHeader {
    let total_len = tag_chunk_len(tag);
    assert_eq!(out.len(), total_len, "output buffer is not tag_chunk_len");
    assert!(tag.seq.0 >= 1, "seqs start at 1");
    let mut w = crate::bytes::Writer::with_capacity(tag.encoded_len());
    tag.write(&mut w);
    let entry = w.into_vec();
    let header_len = CHUNK_PREFIX_LEN + entry.len();
    out[CHUNK_PREFIX_LEN..header_len].copy_from_slice(&entry);
    out[header_len..].fill(0);
    let header = ChunkHeader {
        kind: ChunkKind::Tag,
        first_seq: tag.seq,
        last_seq: tag.seq,
        timestamp_ms,
        generation,
        total_len: total_len as u64,
        header_len_padded: total_len as u64,
        records: Vec::new(),
        tag: Some(tag.clone()),
    };
    write_prefix(&mut out[..header_len], &header, 1, CHUNK_VERSION);
    header
}

/// Writes the prefix into `head` (prefix + entries, entries already in place) and its crc.
fn write_prefix(head: &mut [u8], h: &ChunkHeader, entry_count: u32, version: u16) {
    let header_len = head.len() as u32;
    let b = &mut head[..CHUNK_PREFIX_LEN];
    b[0..4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&version.to_le_bytes());
    b[6..8].copy_from_slice(&h.kind.as_u16().to_le_bytes());
    b[8..12].copy_from_slice(&header_len.to_le_bytes());
    b[12..16].copy_from_slice(&entry_count.to_le_bytes());
    b[16..24].copy_from_slice(&h.first_seq.0.to_le_bytes());
    b[24..32].copy_from_slice(&h.last_seq.0.to_le_bytes());
    b[32..40].copy_from_slice(&h.timestamp_ms.to_le_bytes());
    b[40..48].copy_from_slice(&h.generation.to_le_bytes());
    b[48..56].copy_from_slice(&h.total_len.to_le_bytes());
    b[56..60].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..CRC_OFF]), &head[CHUNK_PREFIX_LEN..]);
    head[CRC_OFF..CHUNK_PREFIX_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Checks every data record of a whole chunk (`chunk`: its `total_len` bytes) against its crc;
/// an encoded record's table and frames must also fill its region (up to the next record's
/// data, or the chunk's end) but for the zero padding to a BLOCK.
pub fn verify_chunk_data(h: &ChunkHeader, chunk: &[u8]) -> Result<(), DecodeError> {
    let data: Vec<&ChunkRecord> = h
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Data)
        .collect();
    for (i, r) in data.iter().enumerate() {
        let start = r.data_pos as usize;
        let end = data.get(i + 1).map_or(h.total_len, |next| next.data_pos) as usize;
        let Some(region) = chunk.get(start..end) else {
            return Err(DecodeError::Truncated {
                need: end,
                have: chunk.len(),
            });
        };
        match r.encoding {
            Encoding::Raw => verify_record_data(r, region)?,
            Encoding::Zstd => verify_encoded(r.len, r.data_crc, region)?,
        }
    }
    Ok(())
}

/// Checks one record's data against its crc. `data` may be longer than the record (a whole
/// padded block range read in place); only the first `len` bytes are checked (of an encoded
/// record: its table and frames). Zero and trim records have no data and always pass.
pub fn verify_record_data(rec: &ChunkRecord, data: &[u8]) -> Result<(), DecodeError> {
    if rec.kind != RecordKind::Data {
        return Ok(());
    }
    if rec.encoding == Encoding::Zstd {
        super::encoding::checked_frames(rec.len, rec.data_crc, data)?;
        return Ok(());
    }
    let len = rec.len as usize;
    let Some(d) = data.get(..len) else {
        return Err(DecodeError::Truncated {
            need: len,
            have: data.len(),
        });
    };
    if crc32c::crc32c(d) != rec.data_crc {
        return Err(DecodeError::PayloadChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
