//! A batch's records: the payload that BATCH carries zstd-compressed.
//!
//! Uncompressed, the records lie back to back; each is a 16-byte header followed, for data
//! records only, by `len` bytes of data:
//!
//! | off | size | field    | notes                                                         |
//! |----:|-----:|----------|---------------------------------------------------------------|
//! |   0 |    2 | disk     | index into the group's disk list, in HELLO order              |
//! |   2 |    1 | kind     | [`RecordKind`]: 0 data, 1 zero, 2 trim                        |
//! |   3 |    1 | reserved | 0                                                             |
//! |   4 |    4 | len      | bytes; multiple of [`SECTOR`], 1..=[`MAX_RECORD_LEN`]         |
//! |   8 |    8 | offset   | bytes; multiple of [`SECTOR`]; offset + len does not overflow |
//! |  16 |  len | data     | only for kind data                                            |
//!
//! The record at index i has seq `first_seq + i`. The whole payload is compressed as one zstd
//! frame; decompression is bounded by the batch's `uncompressed_len` (itself capped by
//! [`MAX_BATCH_UNCOMPRESSED`]) and must produce exactly that many bytes.

use crate::bytes::{Reader, Writer};
use crate::message::{Batch, BatchRef};
use crate::{DecodeError, Seq, MAX_BATCH_RECORDS, MAX_BATCH_UNCOMPRESSED, MAX_RECORD_LEN, SECTOR};

/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// What a record writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum RecordKind {
    /// `len` bytes of data follow.
    Data = 0,
    /// The range reads as zeros (no data travels).
    Zero = 1,
    /// The range was discarded; it reads as zeros on the replica (no data travels).
    Trim = 2,
}

impl RecordKind {
    /// The wire / on-disk value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The kind with this value, if this version knows it.
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        match v {
            0 => Some(RecordKind::Data),
            1 => Some(RecordKind::Zero),
            2 => Some(RecordKind::Trim),
            _ => None,
        }
    }

    pub(crate) fn decode(what: &'static str, v: u8) -> Result<RecordKind, DecodeError> {
        RecordKind::from_u8(v)
            .ok_or_else(|| DecodeError::invalid(what, format!("unknown record kind {v}")))
    }
}

/// One record, borrowed: what a caller builds a batch or a chunk from, and what decoding yields.
/// `data.len() == len` for [`RecordKind::Data`]; `data` is empty otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub disk: u16,
    pub kind: RecordKind,
    pub offset: u64,
    pub len: u32,
    pub data: &'a [u8],
}

impl RecordRef<'_> {
    /// The record's header (the table in the module docs); its data, if any, follows it.
    pub fn encode_header(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..2].copy_from_slice(&self.disk.to_le_bytes());
        h[2] = self.kind.as_u8();
        // 3: reserved, zero.
        h[4..8].copy_from_slice(&self.len.to_le_bytes());
        h[8..16].copy_from_slice(&self.offset.to_le_bytes());
        h
    }
}

/// Checks a record's range: `len` a multiple of [`SECTOR`] in 1..=[`MAX_RECORD_LEN`], `offset` a
/// multiple of [`SECTOR`], and `offset + len` without overflow. `at` names the record in errors.
pub(crate) fn check_range(
    what: &'static str,
    at: impl std::fmt::Display,
    offset: u64,
    len: u32,
) -> Result<(), DecodeError> {
    if len == 0 || len > MAX_RECORD_LEN || u64::from(len) % SECTOR != 0 {
        return Err(DecodeError::invalid(
            what,
            format!("{at}: len {len} is not a multiple of {SECTOR} in 1..={MAX_RECORD_LEN}"),
        ));
    }
    if !offset.is_multiple_of(SECTOR) {
        return Err(DecodeError::invalid(
            what,
            format!("{at}: offset {offset} is not a multiple of {SECTOR}"),
        ));
    }
    if offset.checked_add(u64::from(len)).is_none() {
        return Err(DecodeError::invalid(
            what,
            format!("{at}: offset {offset} + len {len} overflows"),
        ));
    }
    Ok(())
}

/// The uncompressed record payload for `records` (the table in the module docs).
///
/// # Panics
/// If a data record's `data.len()` differs from its `len`, or a zero/trim record carries data:
/// the bytes would not parse back.
pub fn encode_records(records: &[RecordRef<'_>]) -> Vec<u8> {
    let size = records
        .iter()
        .map(|r| RECORD_HEADER_LEN + r.data.len())
        .sum();
    let mut w = Writer::with_capacity(size);
    for (i, r) in records.iter().enumerate() {
        check_data_matches(i, r);
        w.bytes(&r.encode_header());
        w.bytes(r.data);
    }
    w.into_vec()
}

pub(crate) fn check_data_matches(i: usize, r: &RecordRef<'_>) {
    match r.kind {
        RecordKind::Data => assert_eq!(
            r.data.len(),
            r.len as usize,
            "record {i}: data record with len {} carries {} bytes",
            r.len,
            r.data.len()
        ),
        RecordKind::Zero | RecordKind::Trim => assert!(
            r.data.is_empty(),
            "record {i}: {:?} record carries {} bytes of data",
            r.kind,
            r.data.len()
        ),
    }
}

impl BatchRef<'_> {
    /// As [`Batch::decode_records`], reading the compressed bytes in place.
    pub fn decode_records(&self) -> Result<DecodedRecords, DecodeError> {
        decompress_records(self.compressed, self.uncompressed_len, self.record_count)
    }

    /// As [`Batch::last_seq`].
    pub fn last_seq(&self) -> Seq {
        last_seq(self.first_seq, self.record_count)
    }
}

impl Batch {
    /// Builds a batch: encodes `records` (seqs `first_seq..`) and compresses them with zstd at
    /// `level` (1..=22; 0 means zstd's default).
    ///
    /// # Panics
    /// If `records` is empty, holds more than [`MAX_BATCH_RECORDS`], encodes to more than
    /// [`MAX_BATCH_UNCOMPRESSED`] bytes, or a record's data does not match its kind and len
    /// (see [`encode_records`]): the peer would refuse such a batch, so building one is a bug.
    pub fn build(
        group: &str,
        generation: u64,
        first_seq: Seq,
        timestamp_ms: u64,
        records: &[RecordRef<'_>],
        level: i32,
    ) -> Batch {
        assert!(!records.is_empty(), "a batch holds at least one record");
        assert!(
            records.len() <= MAX_BATCH_RECORDS as usize,
            "{} records in one batch, over MAX_BATCH_RECORDS",
            records.len()
        );
        let raw = encode_records(records);
        assert!(
            raw.len() <= MAX_BATCH_UNCOMPRESSED as usize,
            "batch payload of {} bytes, over MAX_BATCH_UNCOMPRESSED",
            raw.len()
        );
        // Compressing an in-memory buffer fails only on allocation failure (which aborts anyway).
        let compressed = zstd::bulk::compress(&raw, level).expect("zstd compression failed");
        Batch {
            group: group.to_owned(),
            generation,
            first_seq,
            record_count: records.len() as u32,
            timestamp_ms,
            uncompressed_len: raw.len() as u32,
            compressed,
        }
    }

    /// Decompresses (into a buffer of exactly `uncompressed_len` capacity, never more) and
    /// parses the records; checks that the payload decompresses to exactly `uncompressed_len`
    /// bytes, that it holds `record_count` valid records and nothing after them.
    pub fn decode_records(&self) -> Result<DecodedRecords, DecodeError> {
        decompress_records(&self.compressed, self.uncompressed_len, self.record_count)
    }

    /// The seq of the last record: `first_seq + record_count - 1` (saturating, so a batch that
    /// was built by hand with a bad count cannot make this panic).
    pub fn last_seq(&self) -> Seq {
        last_seq(self.first_seq, self.record_count)
    }
}

fn last_seq(first_seq: Seq, record_count: u32) -> Seq {
    Seq(first_seq
        .0
        .saturating_add(u64::from(record_count))
        .saturating_sub(1))
}

fn check_count(record_count: u32) -> Result<(), DecodeError> {
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
    Ok(())
}

/// Where one record lives inside [`DecodedRecords`]'s buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordMeta {
    disk: u16,
    kind: RecordKind,
    offset: u64,
    len: u32,
    /// Start of the data in `raw` (for zero/trim: where the data would be; it is empty).
    data_start: usize,
}

/// A batch's records, decompressed and validated; owns the buffer the data is borrowed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecords {
    raw: Vec<u8>,
    metas: Vec<RecordMeta>,
}

impl DecodedRecords {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// Whether there are no records (never true for a decoded batch).
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Record `i` (its seq is the batch's `first_seq + i`).
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn get(&self, i: usize) -> RecordRef<'_> {
        self.record(&self.metas[i])
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> {
        self.metas.iter().map(|m| self.record(m))
    }

    /// The decompressed payload the records point into.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn record(&self, m: &RecordMeta) -> RecordRef<'_> {
        let data = match m.kind {
            RecordKind::Data => &self.raw[m.data_start..m.data_start + m.len as usize],
            RecordKind::Zero | RecordKind::Trim => &[],
        };
        RecordRef {
            disk: m.disk,
            kind: m.kind,
            offset: m.offset,
            len: m.len,
            data,
        }
    }
}

/// Decompresses a batch's records (never more than `uncompressed_len` bytes) and parses them.
fn decompress_records(
    compressed: &[u8],
    uncompressed_len: u32,
    record_count: u32,
) -> Result<DecodedRecords, DecodeError> {
    check_count(record_count)?;
    if uncompressed_len > MAX_BATCH_UNCOMPRESSED {
        return Err(DecodeError::too_large(
            "batch uncompressed_len",
            u64::from(uncompressed_len),
            u64::from(MAX_BATCH_UNCOMPRESSED),
        ));
    }
    let want = uncompressed_len as usize;
    if want < record_count as usize * RECORD_HEADER_LEN {
        return Err(DecodeError::invalid(
            "batch uncompressed_len",
            format!("{want} bytes cannot hold {} records", record_count),
        ));
    }
    let mut raw = Vec::with_capacity(want);
    let mut z =
        zstd::bulk::Decompressor::new().map_err(|e| DecodeError::Decompress(e.to_string()))?;
    // decompress_to_buffer writes into the Vec's spare capacity and fails if the frame
    // holds more: the announced length bounds the memory a hostile batch can take.
    let got = z
        .decompress_to_buffer(compressed, &mut raw)
        .map_err(|e| DecodeError::Decompress(e.to_string()))?;
    if got != want {
        return Err(DecodeError::Decompress(format!(
            "decompressed to {got} bytes, batch says {want}"
        )));
    }
    parse_records(raw, record_count)
}

/// Parses an already-decompressed record payload holding exactly `record_count` records
/// (exposed for fuzzing and for readers that decompress themselves).
pub fn parse_records(raw: Vec<u8>, record_count: u32) -> Result<DecodedRecords, DecodeError> {
    if raw.len() > MAX_BATCH_UNCOMPRESSED as usize {
        return Err(DecodeError::too_large(
            "batch records",
            raw.len() as u64,
            u64::from(MAX_BATCH_UNCOMPRESSED),
        ));
    }
    check_count(record_count)?;
    let metas = {
        let mut r = Reader::new(&raw);
        let n = r.count("batch records", u64::from(record_count), RECORD_HEADER_LEN)?;
        let mut metas = Vec::with_capacity(n);
        for i in 0..n {
            let disk = r.u16()?;
            let kind = RecordKind::decode("batch record", r.u8()?)?;
            let reserved = r.u8()?;
            let len = r.u32()?;
            let offset = r.u64()?;
            if reserved != 0 {
                return Err(DecodeError::invalid(
                    "batch record",
                    format!("record {i}: reserved byte is {reserved}"),
                ));
            }
            check_range("batch record", format_args!("record {i}"), offset, len)?;
            let data_start = raw.len() - r.remaining();
            if kind == RecordKind::Data {
                r.bytes(len as usize)?;
            }
            metas.push(RecordMeta {
                disk,
                kind,
                offset,
                len,
                data_start,
            });
        }
        r.finish("batch records")?;
        metas
    };
    Ok(DecodedRecords { raw, metas })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(data: &'a [u8]) -> Vec<RecordRef<'a>> {
        vec![
            RecordRef {
                disk: 0,
                kind: RecordKind::Data,
                offset: 4096,
                len: data.len() as u32,
                data,
            },
            RecordRef {
                disk: 1,
                kind: RecordKind::Zero,
                offset: 0,
                len: 1 << 20,
                data: &[],
            },
            RecordRef {
                disk: 0,
                kind: RecordKind::Trim,
                offset: 512,
                len: 512,
                data: &[],
            },
        ]
    }

    #[test]
    fn batch_round_trips() {
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        let recs = sample(&data);
        let b = Batch::build("g", 2, Seq(10), 123, &recs, 3);
        assert_eq!(b.record_count, 3);
        assert_eq!(b.last_seq(), Seq(12));
        assert_eq!(b.uncompressed_len as usize, 3 * 16 + 1024);
        let d = b.decode_records().unwrap();
        assert_eq!(d.len(), 3);
        assert!(!d.is_empty());
        assert_eq!(d.iter().collect::<Vec<_>>(), recs);
        assert_eq!(d.get(1), recs[1]);
    }

    #[test]
    fn layout_is_as_documented() {
        let raw = encode_records(&[RecordRef {
            disk: 0x0201,
            kind: RecordKind::Data,
            offset: 0x0800,
            len: 512,
            data: &[0xab; 512],
        }]);
        assert_eq!(
            &raw[..16],
            &[1, 2, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&raw[16..], &[0xab; 512][..]);
    }

    #[test]
    fn bad_records_are_refused() {
        let good = encode_records(&sample(&[1; 512]));
        assert!(parse_records(good.clone(), 3).is_ok());
        assert!(parse_records(good.clone(), 2).is_err(), "trailing record");
        assert!(parse_records(good.clone(), 4).is_err(), "missing record");
        assert!(parse_records(good.clone(), 0).is_err());
        let patch = |off: usize, v: u8| {
            let mut b = good.clone();
            b[off] = v;
            parse_records(b, 3)
        };
        assert!(patch(2, 3).is_err(), "unknown kind");
        assert!(patch(3, 1).is_err(), "reserved");
        assert!(patch(4, 1).is_err(), "len not sector multiple");
        assert!(patch(8, 1).is_err(), "offset not sector multiple");
        assert!(patch(15, 0xff).is_ok(), "big offset still fits");
        let mut b = good.clone();
        b[4..8].copy_from_slice(&(MAX_RECORD_LEN + 512).to_le_bytes());
        assert!(parse_records(b, 3).is_err(), "len over cap");
    }

    #[test]
    fn decompression_is_bounded_by_uncompressed_len() {
        let data = [5u8; 4096];
        let mut b = Batch::build("g", 1, Seq(1), 0, &sample(&data), 1);
        b.uncompressed_len -= 1;
        assert!(matches!(
            b.decode_records(),
            Err(DecodeError::Decompress(_))
        ));
        b.uncompressed_len += 2;
        assert!(matches!(
            b.decode_records(),
            Err(DecodeError::Decompress(_))
        ));
        b.uncompressed_len = MAX_BATCH_UNCOMPRESSED + 1;
        assert!(matches!(
            b.decode_records(),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut g = Batch::build("g", 1, Seq(1), 0, &sample(&data), 1);
        g.compressed[5] ^= 0xff;
        assert!(g.decode_records().is_err());
    }

    #[test]
    fn last_seq_never_panics() {
        let mut b = Batch::build("g", 1, Seq(1), 0, &sample(&[0; 512]), 1);
        b.record_count = 0;
        b.first_seq = Seq(0);
        assert_eq!(b.last_seq(), Seq(0));
        b.first_seq = Seq(u64::MAX);
        b.record_count = 5;
        assert_eq!(b.last_seq(), Seq(u64::MAX - 1));
    }

    #[test]
    #[should_panic(expected = "data record with len")]
    fn build_refuses_mismatched_data() {
        let r = RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 0,
            len: 1024,
            data: &[0; 512],
        };
        encode_records(&[r]);
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_string(&RecordKind::Trim).unwrap(),
            "\"trim\""
        );
    }
}
