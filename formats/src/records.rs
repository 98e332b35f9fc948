//! A batch's records: the payload that BATCH carries zstd-compressed.
//!
//! Uncompressed, the records lie back to back; each is a 16-byte header followed, for data
//! records only, by `len` bytes of data:
//!
//! | off | size | field    | notes                                                         |
//! |----:|-----:|----------|---------------------------------------------------------------|
//! |   0 |    2 | disk     | index into the group's disk list, in HELLO order              |
//! |   2 |    1 | kind     | [`RecordKind`]: 0 data, 1 zero, 2 trim                        |
//! |   3 |    1 | encoding | data records: 0 plain, 1 deduplicated ([`crate::dedup`]), 2 framed ([`crate::framed`]); else 0 |
//! |   4 |    4 | len      | bytes; multiple of [`SECTOR`], 1..=[`MAX_RECORD_LEN`]         |
//! |   8 |    8 | offset   | bytes; multiple of [`SECTOR`]; offset + len does not overflow |
//! |  16 |  len | data     | only for kind data                                            |
//!
//! The record at index i has seq `first_seq + i`. The whole payload is compressed as one zstd
//! frame; decompression is bounded by the batch's `uncompressed_len` (itself capped by
//! [`MAX_BATCH_UNCOMPRESSED`]) and must produce exactly that many bytes.
//!
//! A deduplicated data record (encoding 1, only in a session that agreed on a dedup window, and
//! only with `len` a multiple of [`BLOCK`]) carries instead of its data one entry per 4 KiB
//! block: a tag byte, then 4096 bytes (tag 0, literal) or the u64 number of a block in the
//! session's window and the block's u64 xxh3 (tag 1, reference; see [`crate::hash`]). Decoding resolves the references, so what a caller
//! sees is always plain data records.

use crate::bytes::{Reader, Writer};
use crate::dedup::DedupWindow;
use crate::hash::block_hash;
use crate::message::{Batch, BatchRef};
use crate::{
    DecodeError, Seq, BLOCK, MAX_BATCH_RECORDS, MAX_BATCH_UNCOMPRESSED, MAX_RECORD_LEN, SECTOR,
};

/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// Header byte 3 of a data record whose data travels as it is.
pub(crate) const ENCODING_PLAIN: u8 = 0;
/// Header byte 3 of a data record whose body is one entry per block (literal or reference).
pub(crate) const ENCODING_DEDUP: u8 = 1;
/// Entry tag: 4096 bytes of data follow.
const ENTRY_LITERAL: u8 = 0;
/// Entry tag: a u64 block number in the session's dedup window follows, then the block's hash.
const ENTRY_REF: u8 = 1;

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
        self.decode_records_in(None)
    }

    /// As [`BatchRef::decode_records`] in a session with a dedup window (`None`: without):
    /// references are resolved against `window`, and the batch's literal blocks go into it.
    /// A batch that fails to decode leaves the window in a state the sender's is not in: the
    /// session must end (every refusal ends it).
    pub fn decode_records_in(
        &self,
        window: Option<&mut DedupWindow>,
    ) -> Result<DecodedRecords, DecodeError> {
        decompress_records(
            self.compressed,
            self.uncompressed_len,
            self.record_count,
            window,
        )
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
        check_build_count(records);
        let raw = encode_records(records);
        Batch::from_payload(
            group,
            generation,
            first_seq,
            timestamp_ms,
            records.len(),
            &raw,
            level,
        )
    }

    /// As [`Batch::build`], with the data records' 4 KiB blocks deduplicated against the
    /// sender's `window` of the session the batch goes out on (see [`crate::dedup`]). The batch
    /// must then be sent on that session, after every batch built against the window before it.
    pub fn build_dedup(
        group: &str,
        generation: u64,
        first_seq: Seq,
        timestamp_ms: u64,
        records: &[RecordRef<'_>],
        level: i32,
        window: &mut DedupWindow,
    ) -> (Batch, DedupStats) {
        check_build_count(records);
        let (raw, stats) = encode_records_dedup(records, window);
        let b = Batch::from_payload(
            group,
            generation,
            first_seq,
            timestamp_ms,
            records.len(),
            &raw,
            level,
        );
        (b, stats)
    }

    /// A batch of a record payload already encoded (by [`encode_records`] or
    /// [`encode_records_dedup`]) holding `record_count` records, compressed at `level`.
    ///
    /// # Panics
    /// If `raw` is larger than [`MAX_BATCH_UNCOMPRESSED`].
    pub fn from_payload(
        group: &str,
        generation: u64,
        first_seq: Seq,
        timestamp_ms: u64,
        record_count: usize,
        raw: &[u8],
        level: i32,
    ) -> Batch {
        assert!(
            raw.len() <= MAX_BATCH_UNCOMPRESSED as usize,
            "batch payload of {} bytes, over MAX_BATCH_UNCOMPRESSED",
            raw.len()
        );
        // Compressing an in-memory buffer fails only on allocation failure (which aborts anyway).
        let compressed = zstd::bulk::compress(raw, level).expect("zstd compression failed");
        Batch {
            group: group.to_owned(),
            generation,
            first_seq,
            record_count: record_count as u32,
            timestamp_ms,
            uncompressed_len: raw.len() as u32,
            compressed,
        }
    }

    /// Decompresses (into a buffer of exactly `uncompressed_len` capacity, never more) and
    /// parses the records; checks that the payload decompresses to exactly `uncompressed_len`
    /// bytes, that it holds `record_count` valid records and nothing after them.
    pub fn decode_records(&self) -> Result<DecodedRecords, DecodeError> {
        self.decode_records_in(None)
    }

    /// As [`BatchRef::decode_records_in`].
    pub fn decode_records_in(
        &self,
        window: Option<&mut DedupWindow>,
    ) -> Result<DecodedRecords, DecodeError> {
        decompress_records(
            &self.compressed,
            self.uncompressed_len,
            self.record_count,
            window,
        )
    }

    /// The seq of the last record: `first_seq + record_count - 1` (saturating, so a batch that
    /// was built by hand with a bad count cannot make this panic).
    pub fn last_seq(&self) -> Seq {
        last_seq(self.first_seq, self.record_count)
    }
}

pub(crate) fn last_seq(first_seq: Seq, record_count: u32) -> Seq {
    Seq(first_seq
        .0
        .saturating_add(u64::from(record_count))
        .saturating_sub(1))
}

pub(crate) fn check_count(record_count: u32) -> Result<(), DecodeError> {
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
    window: Option<&mut DedupWindow>,
) -> Result<DecodedRecords, DecodeError> {
    let raw = decompress_payload(compressed, uncompressed_len, record_count)?;
    match window {
        None => parse_records(raw, record_count),
        Some(w) => parse_records_dedup(&raw, record_count, w),
    }
}

/// Decompresses a batch's record payload: exactly `uncompressed_len` bytes (capped by
/// [`MAX_BATCH_UNCOMPRESSED`], and room for `record_count` headers), never more.
pub(crate) fn decompress_payload(
    compressed: &[u8],
    uncompressed_len: u32,
    record_count: u32,
) -> Result<Vec<u8>, DecodeError> {
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
    // decompress_to_buffer writes into the Vec's spare capacity and fails if the frame
    // holds more: the announced length bounds the memory a hostile batch can take.
    let got =
        crate::zstd_context::with_decompressor(|z| z.decompress_to_buffer(compressed, &mut raw))
            .and_then(|r| r)
            .map_err(|e| DecodeError::Decompress(e.to_string()))?;
    if got != want {
        return Err(DecodeError::Decompress(format!(
            "decompressed to {got} bytes, batch says {want}"
        )));
    }
    Ok(raw)
}

/// A decompressed record payload's size and record count, checked before parsing it.
pub(crate) fn check_payload(raw: &[u8], record_count: u32) -> Result<(), DecodeError> {
    if raw.len() > MAX_BATCH_UNCOMPRESSED as usize {
        return Err(DecodeError::too_large(
            "batch records",
            raw.len() as u64,
            u64::from(MAX_BATCH_UNCOMPRESSED),
        ));
    }
    check_count(record_count)
}

/// Parses an already-decompressed record payload holding exactly `record_count` records
/// (exposed for fuzzing and for readers that decompress themselves).
pub fn parse_records(raw: Vec<u8>, record_count: u32) -> Result<DecodedRecords, DecodeError> {
    check_payload(&raw, record_count)?;
    let metas = {
        let mut r = Reader::new(&raw);
        let n = r.count("batch records", u64::from(record_count), RECORD_HEADER_LEN)?;
        let mut metas = Vec::with_capacity(n);
        for i in 0..n {
            let disk = r.u16()?;
            let kind = RecordKind::decode("batch record", r.u8()?)?;
            let encoding = r.u8()?;
            let len = r.u32()?;
            let offset = r.u64()?;
            if encoding == ENCODING_DEDUP && kind == RecordKind::Data {
                return Err(DecodeError::invalid(
                    "batch record",
                    format!(
                        "record {i} is deduplicated, but the session agreed on no dedup window"
                    ),
                ));
            }
            if encoding == crate::framed::ENCODING_FRAMED && kind == RecordKind::Data {
                return Err(DecodeError::invalid(
                    "batch record",
                    format!(
                        "record {i} is framed (journal-encoded), but the session was not granted \
                         framed records"
                    ),
                ));
            }
            if encoding != ENCODING_PLAIN {
                return Err(DecodeError::invalid(
                    "batch record",
                    format!("record {i}: encoding byte is {encoding}"),
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

fn check_build_count(records: &[RecordRef<'_>]) {
    assert!(!records.is_empty(), "a batch holds at least one record");
    assert!(
        records.len() <= MAX_BATCH_RECORDS as usize,
        "{} records in one batch, over MAX_BATCH_RECORDS",
        records.len()
    );
}

/// What deduplication did to a batch's data blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Blocks sent as they are (and put in the window).
    pub literal_blocks: u64,
    /// Blocks sent as a reference to an earlier one.
    pub ref_blocks: u64,
}

/// As [`encode_records`], with each data record whose `len` is a multiple of [`BLOCK`] looked
/// up block by block in the sender's `window`: a record with at least one repeated block goes
/// deduplicated (encoding 1), others plain. Every literal block goes into the window, in order.
///
/// # Panics
/// As [`encode_records`].
pub fn encode_records_dedup(
    records: &[RecordRef<'_>],
    window: &mut DedupWindow,
) -> (Vec<u8>, DedupStats) {
    let (raw, stats) = encode_records_dedup_if_any(records, window);
    (raw.unwrap_or_else(|| encode_records(records)), stats)
}

/// As [`encode_records_dedup`], but without building the payload when no block was found in
/// the window (None: the records encode as [`encode_records`] does). The window takes the
/// literal blocks either way. A relay forwarding batches that nothing repeats keeps the
/// agent's frame: building a payload only to throw it away was most of its copying.
pub fn encode_records_dedup_if_any(
    records: &[RecordRef<'_>],
    window: &mut DedupWindow,
) -> (Option<Vec<u8>>, DedupStats) {
    let mut stats = DedupStats::default();
    let dedupable =
        |r: &RecordRef<'_>| r.kind == RecordKind::Data && (r.len as usize).is_multiple_of(BLOCK);
    // Per block of every dedupable record, in order: None for a literal, Some(n) for a
    // reference.
    let mut plan: Vec<Option<u64>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        check_data_matches(i, r);
        if dedupable(r) {
            plan.extend(r.data.chunks_exact(BLOCK).map(|b| window.find_or_push(b)));
        }
    }
    stats.ref_blocks = plan.iter().filter(|p| p.is_some()).count() as u64;
    stats.literal_blocks = plan.len() as u64 - stats.ref_blocks;
    if stats.ref_blocks == 0 {
        return (None, stats);
    }
    let mut w = Writer::with_capacity(
        records
            .iter()
            .map(|r| RECORD_HEADER_LEN + r.data.len())
            .sum(),
    );
    let mut rest = &plan[..];
    for r in records {
        if !dedupable(r) {
            w.bytes(&r.encode_header());
            w.bytes(r.data);
            continue;
        }
        let (mine, after) = rest.split_at(r.data.len() / BLOCK);
        rest = after;
        let mut header = r.encode_header();
        if mine.iter().all(Option::is_none) {
            w.bytes(&header);
            w.bytes(r.data);
            continue;
        }
        header[3] = ENCODING_DEDUP;
        w.bytes(&header);
        for (block, p) in r.data.chunks_exact(BLOCK).zip(mine) {
            match p {
                None => {
                    w.u8(ENTRY_LITERAL);
                    w.bytes(block);
                }
                Some(n) => {
                    w.u8(ENTRY_REF);
                    w.u64(*n);
                    w.u64(block_hash(block));
                }
            }
        }
    }
    (Some(w.into_vec()), stats)
}

/// Parses a decompressed record payload in a session with a dedup window: references are
/// resolved against `window` and literal blocks go into it (the rule in [`crate::dedup`]). The
/// records come back plain, in a new buffer no larger than [`MAX_BATCH_UNCOMPRESSED`].
pub fn parse_records_dedup(
    raw: &[u8],
    record_count: u32,
    window: &mut DedupWindow,
) -> Result<DecodedRecords, DecodeError> {
    check_count(record_count)?;
    let limit = MAX_BATCH_UNCOMPRESSED as usize;
    let mut out = Writer::with_capacity(raw.len());
    let mut metas = Vec::new();
    let mut r = Reader::new(raw);
    let n = r.count("batch records", u64::from(record_count), RECORD_HEADER_LEN)?;
    for i in 0..n {
        let disk = r.u16()?;
        let kind = RecordKind::decode("batch record", r.u8()?)?;
        let encoding = r.u8()?;
        let len = r.u32()?;
        let offset = r.u64()?;
        check_range("batch record", format_args!("record {i}"), offset, len)?;
        let dedup = match (kind, encoding) {
            (_, ENCODING_PLAIN) => false,
            (RecordKind::Data, ENCODING_DEDUP) if (len as usize).is_multiple_of(BLOCK) => true,
            _ => {
                return Err(DecodeError::invalid(
                    "batch record",
                    format!(
                        "record {i}: encoding byte {encoding} on a {kind:?} record of {len} bytes"
                    ),
                ))
            }
        };
        let body = if kind == RecordKind::Data {
            len as usize
        } else {
            0
        };
        if out.len() + RECORD_HEADER_LEN + body > limit {
            return Err(DecodeError::too_large(
                "batch records, deduplication resolved",
                (out.len() + RECORD_HEADER_LEN + body) as u64,
                limit as u64,
            ));
        }
        let header = RecordRef {
            disk,
            kind,
            offset,
            len,
            data: &[],
        }
        .encode_header();
        out.bytes(&header);
        let data_start = out.len();
        if kind == RecordKind::Data && !dedup {
            let data = r.bytes(body)?;
            if body.is_multiple_of(BLOCK) {
                data.chunks_exact(BLOCK).for_each(|b| window.push(b));
            }
            out.bytes(data);
        } else if dedup {
            for k in 0..body / BLOCK {
                match r.u8()? {
                    ENTRY_LITERAL => {
                        let block = r.bytes(BLOCK)?;
                        window.push(block);
                        out.bytes(block);
                    }
                    ENTRY_REF => {
                        let n = r.u64()?;
                        let hash = r.u64()?;
                        let at = |e| {
                            DecodeError::invalid(
                                "deduplicated record",
                                format!("record {i} block {k}: {e}"),
                            )
                        };
                        let block = window.block(n).map_err(|e| at(e.to_string()))?;
                        // Both windows follow the same rule; the hash makes a bug that broke
                        // that an error instead of another block's data on the replica.
                        if block_hash(block) != hash {
                            return Err(at(format!(
                                "window block {n} does not hash to {hash:#x}: the windows are \
                                 out of step"
                            )));
                        }
                        out.bytes(block);
                    }
                    t => {
                        return Err(DecodeError::invalid(
                            "deduplicated record",
                            format!("record {i} block {k}: unknown entry tag {t}"),
                        ))
                    }
                }
            }
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
    Ok(DecodedRecords {
        raw: out.into_vec(),
        metas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::DedupWindow;

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

    /// Blocks drawn from a small alphabet, so that batches repeat blocks within and across.
    fn blocks(seed: u64, n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|k| {
                let v = ((seed.wrapping_mul(31).wrapping_add(k as u64 * 7)) % 5) as u8;
                vec![v; BLOCK]
            })
            .collect()
    }

    #[test]
    fn deduplicated_batches_decode_to_what_was_sent_in_lockstep() {
        let mut tx = DedupWindow::sender(4);
        let mut rx = DedupWindow::receiver(4);
        let mut refs = 0;
        for seq in 0..20u64 {
            let a = blocks(seq, 3);
            let b = blocks(seq * 3 + 1, 2);
            let odd = vec![7u8; 1024]; // not a whole block: travels plain, not in the window
            let recs = vec![
                RecordRef {
                    disk: 0,
                    kind: RecordKind::Data,
                    offset: seq * 65536,
                    len: a.len() as u32,
                    data: &a,
                },
                RecordRef {
                    disk: 0,
                    kind: RecordKind::Data,
                    offset: 512,
                    len: 1024,
                    data: &odd,
                },
                RecordRef {
                    disk: 1,
                    kind: RecordKind::Trim,
                    offset: 0,
                    len: 4096,
                    data: &[],
                },
                RecordRef {
                    disk: 1,
                    kind: RecordKind::Data,
                    offset: 8192,
                    len: b.len() as u32,
                    data: &b,
                },
            ];
            let (batch, stats) = Batch::build_dedup("g", 1, Seq(seq * 4 + 1), 0, &recs, 3, &mut tx);
            refs += stats.ref_blocks;
            assert_eq!(stats.literal_blocks + stats.ref_blocks, 5);
            let got = batch.decode_records_in(Some(&mut rx)).unwrap();
            assert_eq!(got.iter().collect::<Vec<_>>(), recs, "batch {seq}");
            assert_eq!(rx.next(), tx.next());
        }
        assert!(refs > 30, "a 5-block alphabet repeats: {refs} references");
    }

    #[test]
    fn a_deduplicated_batch_is_refused_without_its_window() {
        let mut tx = DedupWindow::sender(8);
        let a = [vec![1u8; BLOCK], vec![1u8; BLOCK]].concat();
        let recs = [RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 0,
            len: a.len() as u32,
            data: &a,
        }];
        let (batch, stats) = Batch::build_dedup("g", 1, Seq(1), 0, &recs, 3, &mut tx);
        assert_eq!((stats.literal_blocks, stats.ref_blocks), (1, 1));
        let e = batch.decode_records().unwrap_err().to_string();
        assert!(e.contains("no dedup window"), "{e}");
        // A receiver that missed the block the reference names (a window out of step).
        let mut rx = DedupWindow::receiver(8);
        rx.push(&[9u8; BLOCK]);
        let e = batch
            .decode_records_in(Some(&mut rx))
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of step"), "{e}");
    }
}
