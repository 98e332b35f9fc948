//! Building the frame for what the queue hands the sender: a TAG, or a compressed BATCH.
//!
//! When the target granted framed records, each data record is compressed as the journal
//! stores it (independent 32 KiB zstd frames, [`rewind_formats::framed`]), so the target writes
//! it as it comes instead of decompressing the batch and compressing every record again; a
//! record that would not save a 4 KiB block travels plain.

use std::cell::RefCell;
use std::ops::Range;

use rewind_formats::batch::{BatchBuilder, Compression};
use rewind_formats::framed::FramedRecord;
use rewind_formats::segment::encoding::encode_record;
use rewind_formats::{Message, RecordKind, RecordRef, Tag, TagInfo, BLOCK, RECORD_HEADER_LEN};

use crate::error::{Error, Result};
use crate::now_ms;
use crate::stream::levels::Levels;
use crate::stream::queue::{Entry, Queue};
use crate::stream::seq::SeqBase;

/// What building frames needs (shared by the compression threads of one send).
pub(super) struct Framer<'a> {
    pub group: &'a str,
    pub generation: u64,
    /// The wire seq of local seq 0.
    pub base: SeqBase,
    /// Spooled records' bytes are read from the queue's spool.
    pub queue: &'a Queue,
    pub levels: &'a Levels,
    /// The target granted framed records in this session's WELCOME.
    pub framed: bool,
}

thread_local! {
    /// Each compression thread's zstd context for framed records, reused batch after batch.
    static RECORD_ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

/// A batch's framed records: stored bytes of the records that compress, back to back.
struct Encoded {
    bytes: Vec<u8>,
    /// Per record: its table ++ frames in `bytes` and their crc, or None (plain).
    ranges: Vec<Option<(Range<usize>, u32)>>,
}

/// Encodes the data records of more than a BLOCK as the journal stores them, at `level`, with
/// zstd's checksum in every frame (reads of a piece rely on it).
fn encode_records(level: i32, records: &[RecordRef<'_>]) -> std::io::Result<Encoded> {
    RECORD_ZSTD.with(|z| {
        let mut z = z.borrow_mut();
        let c = match z.as_mut() {
            Some(c) => {
                c.set_compression_level(level)?;
                c
            }
            None => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                c.include_checksum(true)?;
                z.insert(c)
            }
        };
        let mut out = Encoded {
            bytes: Vec::new(),
            ranges: Vec::with_capacity(records.len()),
        };
        for r in records {
            let start = out.bytes.len();
            let done = r.kind == RecordKind::Data
                && r.data.len() > BLOCK
                && encode_record(c, r.data, &mut out.bytes);
            out.ranges.push(done.then(|| {
                let range = start..out.bytes.len();
                let crc = crc32c::crc32c(&out.bytes[range.clone()]);
                (range, crc)
            }));
        }
        Ok(out)
    })
}

impl Framer<'_> {
    /// The frame for one group of entries from [`Queue::next_batch`]: a TAG, or a BATCH; and
    /// the batch's uncompressed size (0 for a tag).
    pub fn frame(&self, entries: &[Entry]) -> Result<(Vec<u8>, usize)> {
        let (base, generation) = (self.base, self.generation);
        Ok(match &entries[0] {
            Entry::Tag { seq, tag } => (
                Message::Tag(Tag {
                    group: self.group.to_string(),
                    generation,
                    tag: TagInfo {
                        seq: base.wire(*seq),
                        kind: tag.kind,
                        timestamp_ms: tag.timestamp_ms,
                        name: tag.name.clone(),
                    },
                })
                .to_frame(),
                0,
            ),
            Entry::Record { seq, .. } if self.framed => self.framed_batch(entries, *seq)?,
            Entry::Record { seq, .. } => {
                let level = self.levels.next();
                let zstd = |e: std::io::Error| Error::Protocol(format!("zstd level {level}: {e}"));
                let mut batch = BatchBuilder::new(self.group, generation, Compression::Zstd(level))
                    .map_err(zstd)?;
                for e in entries {
                    let Entry::Record { record, .. } = e else {
                        continue;
                    };
                    let spooled = self.spooled(record)?;
                    batch.push(&RecordRef {
                        disk: record.disk,
                        kind: record.kind,
                        offset: record.offset,
                        len: record.len,
                        data: spooled.as_deref().or(record.data.as_deref()).unwrap_or(&[]),
                    });
                }
                let raw = batch.raw_len();
                let prefix = batch.prefix_len();
                let frame = batch
                    .finish(Vec::new(), base.wire(*seq), now_ms())
                    .map_err(zstd)?;
                self.levels.compressed(level, raw, frame.len() - prefix);
                (frame, raw)
            }
        })
    }
    /// A spooled data record's bytes, read from the spool file (None for records in memory).
    fn spooled(&self, record: &crate::stream::queue::Record) -> Result<Option<Vec<u8>>> {
        if record.kind != RecordKind::Data || record.data.is_some() {
            return Ok(None);
        }
        self.queue.read_spooled(record).map(Some).map_err(|e| {
            Error::Protocol(format!(
                "reading a spooled record (disk {} offset {}): {e}",
                record.disk, record.offset
            ))
        })
    }

    /// A BATCH of framed records (see the module docs) and its plain size. The payload is
    /// packed as stored zstd blocks when nearly all of it is frames already (compressing them
    /// again buys nothing), else at the batch's level, for the plain records.
    fn framed_batch(
        &self,
        entries: &[Entry],
        first: crate::stream::seq::LocalSeq,
    ) -> Result<(Vec<u8>, usize)> {
        let level = self.levels.next();
        let zstd = |e: std::io::Error| Error::Protocol(format!("zstd level {level}: {e}"));
        let mut spooled = Vec::new();
        let records: Vec<&crate::stream::queue::Record> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Record { record, .. } => Some(record.as_ref()),
                Entry::Tag { .. } => None,
            })
            .collect();
        for r in &records {
            spooled.push(self.spooled(r)?);
        }
        let refs: Vec<RecordRef<'_>> = records
            .iter()
            .zip(&spooled)
            .map(|(r, s)| RecordRef {
                disk: r.disk,
                kind: r.kind,
                offset: r.offset,
                len: r.len,
                data: s.as_deref().or(r.data.as_deref()).unwrap_or(&[]),
            })
            .collect();
        let enc = encode_records(level, &refs).map_err(zstd)?;
        let plain_left: usize = refs
            .iter()
            .zip(&enc.ranges)
            .filter(|(_, e)| e.is_none())
            .map(|(r, _)| r.data.len())
            .sum();
        let compression = if plain_left * 8 <= enc.bytes.len() {
            Compression::Store
        } else {
            Compression::Zstd(level)
        };
        let mut batch =
            BatchBuilder::new(self.group, self.generation, compression).map_err(zstd)?;
        for (r, e) in refs.iter().zip(&enc.ranges) {
            batch.push_framed(&match e {
                Some((range, crc)) => FramedRecord {
                    record: RecordRef { data: &[], ..*r },
                    encoded: Some((&enc.bytes[range.clone()], *crc)),
                },
                None => FramedRecord {
                    record: *r,
                    encoded: None,
                },
            });
        }
        // What the level chooser and the metrics count is the plain size, as for plain batches.
        let raw: usize = refs.iter().map(|r| RECORD_HEADER_LEN + r.data.len()).sum();
        let prefix = batch.prefix_len();
        let frame = batch
            .finish(Vec::new(), self.base.wire(first), now_ms())
            .map_err(zstd)?;
        self.levels.compressed(level, raw, frame.len() - prefix);
        Ok((frame, raw))
    }
}
