//! Framed records: data records that travel already in the journal's record encoding, so that
//! the target stores them as they arrive (no decompression, no compression on its side).
//!
//! Only in a session whose WELCOME granted them ([`crate::Welcome::framed_records`], frame
//! version 5 on). In such a batch's record payload ([`crate::records`]), a data record may have
//! encoding byte 2 (framed) instead of 0 (plain); its header is followed by
//!
//! | size         | field      | notes                                                        |
//! |-------------:|------------|--------------------------------------------------------------|
//! |            4 | stored_len | bytes of table ++ frames that follow                         |
//! |            4 | data_crc   | crc32c(table ++ frames), the journal entry's `data_crc`      |
//! |   stored_len | stored     | the record's plain `len` bytes encoded as in [`crate::segment::encoding`] |
//!
//! Each frame must be a zstd frame that declares its content size (its span of the record's
//! plain bytes) and carries zstd's content checksum, since a journal read of a piece
//! decompresses one frame without the record's crc and trusts zstd's checksum for it. Records
//! that do not compress travel plain in the same batch; zero and trim records as always.
//!
//! The receiver checks what can be checked without decompressing: the table (each length in
//! 1..=[`crate::segment::encoding::MAX_FRAME_LEN`]), that table and frames add up to `stored_len`, the crc, and each
//! frame's header (magic, checksum flag, content size = its span) and block structure (its
//! compressed size = its table length). A frame whose compressed blocks are garbage still
//! passes: a hostile agent can only spoil its own replica that way, and reads verify zstd's
//! checksum. A batch's payload travels in a zstd frame as every batch's does.

use crate::bytes::{Reader, Writer};
use crate::message::{Batch, BatchRef};
use crate::records::{
    check_data_matches, check_payload, check_range, decompress_payload, RecordKind, RecordRef,
    ENCODING_DEDUP, ENCODING_PLAIN, RECORD_HEADER_LEN,
};
use crate::segment::encoding::{frame_range, read_table, stored_len};
use crate::{DecodeError, Seq};

/// Header byte 3 of a data record that travels framed.
pub(crate) const ENCODING_FRAMED: u8 = 2;
/// Bytes between a framed record's header and its stored bytes: stored_len, data_crc.
pub const FRAMED_PREFIX_LEN: usize = 8;

/// zstd's frame magic, little-endian on the wire.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
/// Frame header descriptor bit: the frame ends with a content checksum.
const ZSTD_CHECKSUM_FLAG: u8 = 1 << 2;

/// One record of a framed batch. `record.data` is the plain bytes of a plain data record and
/// empty for a framed one (whose `encoded` is its table ++ frames) and for zero/trim records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramedRecord<'a> {
    pub record: RecordRef<'a>,
    /// Table ++ frames of a framed record, and their crc32c.
    pub encoded: Option<(&'a [u8], u32)>,
}

/// Bytes `records` take in a record payload (headers, plain data, framed prefixes and stored
/// bytes).
pub fn framed_payload_len(records: &[FramedRecord<'_>]) -> usize {
    records
        .iter()
        .map(|r| {
            RECORD_HEADER_LEN
                + match r.encoded {
                    Some((e, _)) => FRAMED_PREFIX_LEN + e.len(),
                    None => r.record.data.len(),
                }
        })
        .sum()
}

/// Appends one record to a record payload being written by `put`: its header and plain data,
/// or, framed, its header (encoding 2), stored_len, data_crc and stored bytes.
///
/// # Panics
/// If a plain record's data does not match its kind and len, a framed one is not a data record
/// or its stored bytes are over 4 GiB: no reader would accept them.
pub fn put_framed_record(i: usize, r: &FramedRecord<'_>, mut put: impl FnMut(&[u8])) {
    let mut header = r.record.encode_header();
    match r.encoded {
        None => {
            check_data_matches(i, &r.record);
            put(&header);
            put(r.record.data);
        }
        Some((stored, crc)) => {
            assert_eq!(
                r.record.kind,
                RecordKind::Data,
                "record {i}: only data records travel framed"
            );
            header[3] = ENCODING_FRAMED;
            put(&header);
            let len = u32::try_from(stored.len()).expect("framed record over 4 GiB");
            put(&len.to_le_bytes());
            put(&crc.to_le_bytes());
            put(stored);
        }
    }
}

/// The record payload for `records` (as [`crate::encode_records`], some records framed).
pub fn encode_records_framed(records: &[FramedRecord<'_>]) -> Vec<u8> {
    let mut w = Writer::with_capacity(framed_payload_len(records));
    for (i, r) in records.iter().enumerate() {
        put_framed_record(i, r, |b| w.bytes(b));
    }
    w.into_vec()
}

/// A framed batch's records, decompressed and checked; owns the buffer they point into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FramedRecords {
    raw: Vec<u8>,
    metas: Vec<Meta>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    disk: u16,
    kind: RecordKind,
    offset: u64,
    len: u32,
    /// Start of the plain data, or of a framed record's stored bytes, in `raw`.
    data_start: usize,
    /// A framed record's stored_len and data_crc.
    framed: Option<(u32, u32)>,
}

impl FramedRecords {
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Record `i` (seq `first_seq + i`). Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> FramedRecord<'_> {
        let m = &self.metas[i];
        let at = |n: usize| &self.raw[m.data_start..m.data_start + n];
        let (data, encoded): (&[u8], _) = match (m.kind, m.framed) {
            (RecordKind::Data, Some((n, crc))) => (&[], Some((at(n as usize), crc))),
            (RecordKind::Data, None) => (at(m.len as usize), None),
            _ => (&[], None),
        };
        FramedRecord {
            record: RecordRef {
                disk: m.disk,
                kind: m.kind,
                offset: m.offset,
                len: m.len,
                data,
            },
            encoded,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = FramedRecord<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl BatchRef<'_> {
    /// Decompresses and checks the records of a batch in a session granted framed records
    /// (see the module docs); errors name the seq of the record at fault and what is wrong.
    pub fn decode_framed(&self) -> Result<FramedRecords, DecodeError> {
        let raw = decompress_payload(self.compressed, self.uncompressed_len, self.record_count)?;
        parse_records_framed(raw, self.record_count, self.first_seq)
    }
}

impl Batch {
    /// As [`BatchRef::decode_framed`].
    pub fn decode_framed(&self) -> Result<FramedRecords, DecodeError> {
        let raw = decompress_payload(&self.compressed, self.uncompressed_len, self.record_count)?;
        parse_records_framed(raw, self.record_count, self.first_seq)
    }
}

/// Parses a decompressed record payload of `record_count` records, some framed, the first at
/// `first_seq` (for the errors).
pub fn parse_records_framed(
    raw: Vec<u8>,
    record_count: u32,
    first_seq: Seq,
) -> Result<FramedRecords, DecodeError> {
    check_payload(&raw, record_count)?;
    let mut metas;
    {
        let mut r = Reader::new(&raw);
        let n = r.count("batch records", u64::from(record_count), RECORD_HEADER_LEN)?;
        metas = Vec::with_capacity(n);
        for i in 0..n {
            let seq = first_seq.0.saturating_add(i as u64);
            let disk = r.u16()?;
            let kind = RecordKind::decode("batch record", r.u8()?)?;
            let encoding = r.u8()?;
            let len = r.u32()?;
            let offset = r.u64()?;
            check_range("batch record", format_args!("seq {seq}"), offset, len)?;
            let bad =
                |why: String| DecodeError::invalid("framed record", format!("seq {seq}: {why}"));
            let framed = match (kind, encoding) {
                (_, ENCODING_PLAIN) => None,
                (RecordKind::Data, ENCODING_FRAMED) => {
                    let stored = r.u32()?;
                    let crc = r.u32()?;
                    Some((stored, crc))
                }
                (RecordKind::Data, ENCODING_DEDUP) => {
                    return Err(bad(
                        "deduplicated, but the session agreed on no dedup window".into(),
                    ))
                }
                (_, e) => return Err(bad(format!("{kind:?} record with encoding byte {e}"))),
            };
            let data_start = raw.len() - r.remaining();
            match (kind, framed) {
                (RecordKind::Data, None) => {
                    r.bytes(len as usize)?;
                }
                (RecordKind::Data, Some((stored, crc))) => {
                    let bytes = r.bytes(stored as usize).map_err(|_| {
                        bad(format!(
                            "stored_len {stored} is past the batch's end ({} bytes left)",
                            raw.len() - data_start
                        ))
                    })?;
                    check_frames(len, crc, bytes).map_err(bad)?;
                }
                _ => {}
            }
            metas.push(Meta {
                disk,
                kind,
                offset,
                len,
                data_start,
                framed,
            });
        }
        r.finish("batch records")?;
    }
    Ok(FramedRecords { raw, metas })
}

/// Checks a framed record's table ++ frames (`stored`) for a record of `len` plain bytes with
/// crc `data_crc`, without decompressing (see the module docs); the error says what is wrong.
pub fn check_frames(len: u32, data_crc: u32, stored: &[u8]) -> Result<(), String> {
    let table = read_table(len, stored).map_err(|e| format!("frame table: {e}"))?;
    let want = stored_len(len, &table);
    if want != stored.len() {
        return Err(format!(
            "its table of {} frames adds up to {want} bytes of table and frames, it carries {}",
            table.len(),
            stored.len()
        ));
    }
    let crc = crc32c::crc32c(stored);
    if crc != data_crc {
        return Err(format!(
            "crc32c of table and frames is {crc:#010x}, the record says {data_crc:#010x}"
        ));
    }
    let mut at = 4 * table.len();
    for (i, &clen) in table.iter().enumerate() {
        let frame = &stored[at..at + clen as usize];
        at += clen as usize;
        let (s, e) = frame_range(len, i);
        let n = table.len();
        if frame.len() < 5 || frame[..4] != ZSTD_MAGIC {
            return Err(format!("frame {i} of {n} is not a zstd frame"));
        }
        if frame[4] & ZSTD_CHECKSUM_FLAG == 0 {
            return Err(format!("frame {i} of {n} has no content checksum"));
        }
        match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(size)) if size == (e - s) as u64 => {}
            Ok(Some(size)) => {
                return Err(format!(
                    "frame {i} of {n} declares {size} plain bytes, its span is {}",
                    e - s
                ))
            }
            Ok(None) => return Err(format!("frame {i} of {n} does not declare its size")),
            Err(_) => return Err(format!("frame {i} of {n} has a damaged header")),
        }
        match zstd::zstd_safe::find_frame_compressed_size(frame) {
            Ok(size) if size == frame.len() => {}
            Ok(size) => {
                return Err(format!(
                    "frame {i} of {n} is {size} bytes long, its table says {clen}"
                ))
            }
            Err(_) => {
                return Err(format!(
                    "frame {i} of {n}: its blocks do not fit its length"
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
