//! Building the frame for what the queue hands the sender: a TAG, or a compressed BATCH.

use rewind_formats::batch::{BatchBuilder, Compression};
use rewind_formats::{Message, RecordKind, RecordRef, Tag, TagInfo};

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
            Entry::Record { seq, .. } => {
                let level = self.levels.next();
                let zstd = |e: std::io::Error| Error::Protocol(format!("zstd level {level}: {e}"));
                let mut batch = BatchBuilder::new(self.group, generation, Compression::Zstd(level))
                    .map_err(zstd)?;
                for e in entries {
                    let Entry::Record { record, .. } = e else {
                        continue;
                    };
                    // Spooled records' bytes come from the spool file.
                    let spooled = if record.kind == RecordKind::Data && record.data.is_none() {
                        Some(self.queue.read_spooled(record).map_err(|e| {
                            Error::Protocol(format!(
                                "reading a spooled record (disk {} offset {}): {e}",
                                record.disk, record.offset
                            ))
                        })?)
                    } else {
                        None
                    };
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
}
