//! Building the frame for what the queue hands the sender: a TAG, or a compressed BATCH.

use rewind_formats::{Batch, Message, RecordKind, RecordRef, Tag, TagInfo};

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
                // Spooled records' bytes come from the spool file.
                let mut spooled: Vec<Option<Vec<u8>>> = Vec::with_capacity(entries.len());
                for e in entries {
                    spooled.push(match e {
                        Entry::Record { record, .. }
                            if record.kind == RecordKind::Data && record.data.is_none() =>
                        {
                            Some(self.queue.read_spooled(record).map_err(|e| {
                                Error::Protocol(format!(
                                    "reading a spooled record (disk {} offset {}): {e}",
                                    record.disk, record.offset
                                ))
                            })?)
                        }
                        _ => None,
                    });
                }
                let refs: Vec<RecordRef<'_>> = entries
                    .iter()
                    .zip(&spooled)
                    .filter_map(|(e, sp)| match e {
                        Entry::Record { record, .. } => Some(RecordRef {
                            disk: record.disk,
                            kind: record.kind,
                            offset: record.offset,
                            len: record.len,
                            data: match sp {
                                Some(bytes) => bytes,
                                None => record.data.as_deref().unwrap_or(&[]),
                            },
                        }),
                        Entry::Tag { .. } => None,
                    })
                    .collect();
                let level = self.levels.next();
                let batch = Batch::build(
                    self.group,
                    generation,
                    base.wire(*seq),
                    now_ms(),
                    &refs,
                    level,
                );
                let raw = batch.uncompressed_len as usize;
                self.levels.compressed(level, raw, batch.compressed.len());
                (Message::Batch(batch).to_frame(), raw)
            }
        })
    }
}
