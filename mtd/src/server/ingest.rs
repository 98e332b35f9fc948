//! Turning what an agent sends into journal chunks: every check that decides whether a batch or
//! tag may enter a group's journal, its encoding for the writer, and where the next batch of
//! each group must start.

use std::sync::Arc;

use rewind_formats::dedup::DedupWindow;
use rewind_formats::message::{BatchRef, ErrorCode, Tag};
use rewind_formats::records::RecordRef;
use rewind_formats::segment::{
    records_chunk_len_with, tag_chunk_len, write_records_chunk_with_crcs, write_tag_chunk,
};
use rewind_formats::Seq;

use super::refusal::{refuse, Refusal};
use crate::store::compression::RecordCompressor;
use crate::store::group::Group;
use crate::store::quota::{padding_of, Quotas};
use crate::store::writer::AppendReq;
use crate::store::Store;
use rewind_linux::clock::now_ms;

/// A group as one session feeds it.
pub struct Feed {
    pub group: Arc<Group>,
    pub generation: u64,
    /// Seq the next batch must start at.
    pub next_seq: Seq,
    pub disk_sizes: Vec<u64>,
    /// The session's dedup window for this group, when the HELLO asked for one (a relay's):
    /// every batch goes through it, in order; a refused batch ends the session with it.
    pub dedup: Option<DedupWindow>,
    /// Compresses data records into the journal (`--journal-compression`), None when off.
    pub compressor: Option<RecordCompressor>,
}

impl Feed {
    /// [`Feed::batch_in`] for a session of plain records.
    #[cfg(test)]
    pub(crate) async fn batch(
        &mut self,
        store: &Store,
        b: &BatchRef<'_>,
        q: &Quotas,
    ) -> Result<(), Refusal> {
        self.batch_in(store, b, q, false).await
    }

    /// Check a batch completely and queue it for the writer; the next batch must follow it.
    /// Nothing of a refused batch is queued. `framed`: the session was granted framed records
    /// ([`rewind_formats::framed`]), whose batches' records come journal-encoded (or plain when
    /// they did not compress) and are stored as they come.
    pub(crate) async fn batch_in(
        &mut self,
        store: &Store,
        b: &BatchRef<'_>,
        q: &Quotas,
        framed: bool,
    ) -> Result<(), Refusal> {
        // The quotas that the header alone decides, before the records are decompressed.
        self.check_quotas(b, q, now_ms())?;
        let req = if framed {
            self.framed_batch_chunk(b)?
        } else {
            self.batch_chunk(b)?
        };
        let padding = self.check_padding(&req, q)?;
        // A group fenced while this session feeds it takes nothing more from it (the session
        // is also told to stop; this closes the gap until it notices).
        self.group.queue_at(self.generation)?;
        self.group.add_pending(u64::from(b.record_count), padding);
        store.append(req).await?;
        self.next_seq = Seq(b.last_seq().0 + 1);
        Ok(())
    }

    /// Check a tag and queue it for the writer.
    pub(crate) async fn tag(&self, store: &Store, t: &Tag) -> Result<(), Refusal> {
        let req = self.tag_chunk(t)?;
        self.group.queue_at(self.generation)?;
        store.append(req).await?;
        Ok(())
    }

    /// The quotas a batch's header decides, checked before anything of it is decompressed:
    /// its time may not be further ahead of `now_ms` (the target's clock) than the allowed skew,
    /// and its records may not take the group's index past its memory quota.
    pub(crate) fn check_quotas(
        &self,
        b: &BatchRef<'_>,
        q: &Quotas,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let g = &self.group.name;
        let skew_ms = q.max_clock_skew.as_millis() as u64;
        if b.timestamp_ms > now_ms.saturating_add(skew_ms) {
            return Err(refuse(
                ErrorCode::OutOfRange,
                format!(
                    "batch for group {g} at seq {} is stamped {} but the target's clock says {}:                      more than {} ahead (--max-clock-skew); check the agent's clock",
                    b.first_seq.0,
                    show_ms(b.timestamp_ms),
                    show_ms(now_ms),
                    humantime::format_duration(q.max_clock_skew),
                ),
            ));
        }
        let extents = self.group.extents();
        let records = extents + self.group.pending().records + u64::from(b.record_count);
        let bytes = Quotas::index_cost(records);
        if bytes > q.max_index_bytes_per_group {
            return Err(refuse(
                ErrorCode::NoSpace,
                format!(
                    "batch for group {g} at seq {} ({} records) would take the group's index to                      about {} MiB, over its quota of {} MiB (--max-index-bytes-per-group); nothing                      of it was applied. It frees as the journal is merged into the base; write                      fewer, larger records or shorten the retention",
                    b.first_seq.0,
                    b.record_count,
                    bytes >> 20,
                    q.max_index_bytes_per_group >> 20
                ),
            ));
        }
        Ok(())
    }

    /// The padding quota, for a checked chunk: returns the padding bytes it adds (see
    /// [`padding_of`]: why records smaller than a block are accepted and counted).
    pub(crate) fn check_padding(&self, req: &AppendReq, q: &Quotas) -> Result<u64, Refusal> {
        let padding = padding_of(&req.header);
        if padding == 0 {
            return Ok(0);
        }
        let held = self.group.padding_bytes();
        let total = held + self.group.pending().padding_bytes + padding;
        if total > q.max_padding_bytes_per_group {
            return Err(refuse(
                ErrorCode::NoSpace,
                format!(
                    "batch for group {} at seq {} holds records smaller than a block ({} B) that                      would take the group's journal padding to {total} bytes, over its quota of                      {} bytes (--max-padding-bytes-per-group); nothing of it was applied",
                    self.group.name,
                    req.header.first_seq.0,
                    rewind_formats::BLOCK,
                    q.max_padding_bytes_per_group
                ),
            ));
        }
        Ok(padding)
    }

    /// Validate a batch completely (generation, seq continuity, decompression, every record's
    /// disk and bounds) and encode it as a journal chunk. Nothing of a bad batch gets through.
    pub fn batch_chunk(&mut self, b: &BatchRef<'_>) -> Result<AppendReq, Refusal> {
        self.check_header(b)?;
        let records = b
            .decode_records_in(self.dedup.as_mut())
            .map_err(|e| bad_batch(&self.group.name, b, e))?;
        let refs: Vec<_> = records.iter().collect();
        self.check_bounds(b, &refs)?;
        // Compressed here, on the session's thread: each session's batches in parallel, and the
        // writer appends fewer bytes.
        let encoded = match self.compressor.as_mut() {
            Some(c) => c.encode(&refs),
            None => Vec::new(),
        };
        Ok(chunk(&self.group, self.generation, b, &refs, &encoded, &[]))
    }

    /// As [`Feed::batch_chunk`] for a batch of framed records: what the agent encoded is
    /// checked without decompressing (table, lengths, crc, frame headers: see
    /// [`rewind_formats::framed`]) and stored as it came.
    pub fn framed_batch_chunk(&mut self, b: &BatchRef<'_>) -> Result<AppendReq, Refusal> {
        self.check_header(b)?;
        let records = b
            .decode_framed()
            .map_err(|e| bad_batch(&self.group.name, b, e))?;
        let (refs, encoded): (Vec<_>, Vec<_>) = records
            .iter()
            .map(|r| (r.record, r.encoded.map(|(e, _)| e)))
            .unzip();
        // Checked against the bytes at the edge: the chunk takes them rather than a second pass.
        let crcs: Vec<_> = records
            .iter()
            .map(|r| r.encoded.map(|(_, crc)| crc))
            .collect();
        self.check_bounds(b, &refs)?;
        Ok(chunk(
            &self.group,
            self.generation,
            b,
            &refs,
            &encoded,
            &crcs,
        ))
    }

    /// A batch's generation and first seq are the session's.
    fn check_header(&self, b: &BatchRef<'_>) -> Result<(), Refusal> {
        let g = &self.group.name;
        if b.generation != self.generation {
            return Err(refuse(
                ErrorCode::StaleGeneration,
                format!(
                    "batch for group {g} has generation {}; the session is at {}",
                    b.generation, self.generation
                ),
            ));
        }
        if b.first_seq != self.next_seq {
            return Err(refuse(
                ErrorCode::SeqGap,
                format!(
                    "batch for group {g} starts at seq {}; expected {}",
                    b.first_seq.0, self.next_seq.0
                ),
            ));
        }
        Ok(())
    }

    /// Every record's disk is one of the group's and its range inside that disk.
    fn check_bounds(&self, b: &BatchRef<'_>, refs: &[RecordRef<'_>]) -> Result<(), Refusal> {
        let g = &self.group.name;
        for (i, r) in refs.iter().enumerate() {
            let seq = b.first_seq.0 + i as u64;
            let Some(&size) = self.disk_sizes.get(usize::from(r.disk)) else {
                return Err(refuse(
                    ErrorCode::UnknownDisk,
                    format!(
                        "record seq {seq} of group {g} names disk index {}; the group has {} disks",
                        r.disk,
                        self.disk_sizes.len()
                    ),
                ));
            };
            if r.offset
                .checked_add(u64::from(r.len))
                .is_none_or(|end| end > size)
            {
                return Err(refuse(
                    ErrorCode::OutOfRange,
                    format!("record seq {seq} of group {g} disk #{} offset {} length {} is past the disk end ({size} bytes)", r.disk, r.offset, r.len),
                ));
            }
        }
        Ok(())
    }

    /// Validate a tag (it must label a seq already sent) and encode it as a journal chunk.
    pub fn tag_chunk(&self, t: &Tag) -> Result<AppendReq, Refusal> {
        let g = &self.group.name;
        if t.generation != self.generation {
            return Err(refuse(
                ErrorCode::StaleGeneration,
                format!(
                    "tag for group {g} has generation {}; the session is at {}",
                    t.generation, self.generation
                ),
            ));
        }
        if t.tag.seq.0 == 0 || t.tag.seq >= self.next_seq {
            return Err(refuse(
                ErrorCode::SeqGap,
                format!(
                    "tag {} of group {g} labels seq {}, which has not been sent (next is {})",
                    t.tag.name, t.tag.seq.0, self.next_seq.0
                ),
            ));
        }
        let len = tag_chunk_len(&t.tag);
        let mut buf = crate::aligned::zeroed(len);
        let header = write_tag_chunk(&mut buf[..len], t.tag.timestamp_ms, self.generation, &t.tag);
        Ok(AppendReq {
            group: self.group.clone(),
            buf,
            header,
        })
    }
}

/// The journal chunk of a checked batch: `encoded[i]`, if any, is record i's table ++
/// frames (empty: all raw), and `crcs[i]`, if any, its crc32c already checked (empty: none).
fn chunk(
    group: &Arc<Group>,
    generation: u64,
    b: &BatchRef<'_>,
    refs: &[RecordRef<'_>],
    encoded: &[Option<&[u8]>],
    crcs: &[Option<u32>],
) -> AppendReq {
    let len = records_chunk_len_with(refs, encoded);
    let mut buf = crate::aligned::pooled(len);
    let header = write_records_chunk_with_crcs(
        &mut buf[..len],
        b.first_seq,
        b.timestamp_ms,
        generation,
        refs,
        encoded,
        crcs,
    );
    AppendReq {
        group: group.clone(),
        buf,
        header,
    }
}

/// A batch whose records do not decode: the refusal names the group, the seq and what.
fn bad_batch(g: &str, b: &BatchRef<'_>, e: rewind_formats::DecodeError) -> Refusal {
    refuse(
        ErrorCode::Protocol,
        format!("batch for group {g} at seq {}: {e}", b.first_seq.0),
    )
}

/// The feed of `group` among a session's.
pub(crate) fn find<'a>(fed: &'a mut [Feed], group: &str) -> Result<&'a mut Feed, Refusal> {
    fed.iter_mut()
        .find(|f| f.group.name == group)
        .ok_or_else(|| {
            refuse(
                ErrorCode::UnknownGroup,
                format!("group {group} was not named in this session's HELLO"),
            )
        })
}

/// A wall-clock time in ms as RFC 3339 (or the raw number if it is out of range).
fn show_ms(ms: u64) -> String {
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)) {
        Some(t) if ms < 253_402_300_799_000 => humantime::format_rfc3339_millis(t).to_string(),
        _ => format!("{ms} ms after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> (tempfile::TempDir, Feed) {
        let (dir, group) = crate::store::group::test_group();
        let f = Feed {
            group,
            generation: 1,
            next_seq: Seq(1),
            disk_sizes: vec![1 << 20],
            dedup: None,
            compressor: None,
        };
        (dir, f)
    }

    fn header(records: u32, timestamp_ms: u64) -> BatchRef<'static> {
        BatchRef {
            group: "g".into(),
            generation: 1,
            first_seq: Seq(1),
            record_count: records,
            timestamp_ms,
            uncompressed_len: records * 16,
            compressed: &[],
        }
    }

    #[test]
    fn batches_ahead_of_the_clock_are_refused_with_both_times() {
        let (_d, f) = feed();
        let q = Quotas::default();
        let now = 1_764_000_000_000; // 2025-11-24
        let skew = q.max_clock_skew.as_millis() as u64;
        assert!(f.check_quotas(&header(1, now + skew), &q, now).is_ok());
        assert!(
            f.check_quotas(&header(1, 0), &q, now).is_ok(),
            "old is fine"
        );
        let r = f
            .check_quotas(&header(1, now + skew + 1), &q, now)
            .unwrap_err();
        assert_eq!(r.code, ErrorCode::OutOfRange);
        assert!(r.message.contains("2025-11-24"), "{}", r.message);
        let r = f.check_quotas(&header(1, u64::MAX), &q, now).unwrap_err();
        assert!(r.message.contains("ms after 1970"), "{}", r.message);
    }

    #[test]
    fn the_index_quota_counts_pending_records() {
        let (_d, f) = feed();
        let q = Quotas {
            max_index_bytes_per_group: Quotas::index_cost(1000),
            ..Quotas::default()
        };
        assert!(f.check_quotas(&header(1000, 0), &q, 0).is_ok());
        assert!(f.check_quotas(&header(1001, 0), &q, 0).is_err());
        f.group.add_pending(600, 0);
        assert!(f.check_quotas(&header(400, 0), &q, 0).is_ok());
        let r = f.check_quotas(&header(401, 0), &q, 0).unwrap_err();
        assert_eq!(r.code, ErrorCode::NoSpace);
        assert!(r.message.contains("--max-index-bytes-per-group"));
    }

    /// A session's feed of group `g` (one disk) in a fresh store.
    fn fed() -> (tempfile::TempDir, Arc<Store>, Feed) {
        use crate::server::testing::{group, store};
        let (dir, store) = store();
        let (g, generation) =
            crate::server::admission::hello_group(&store, &group("g", 1, &["sda"]), "a").unwrap();
        let f = Feed {
            group: g,
            generation,
            next_seq: Seq(1),
            disk_sizes: vec![crate::server::testing::DISK],
            dedup: None,
            compressor: store.journal_compression().compressor(),
        };
        (dir, store, f)
    }

    #[test]
    fn batches_are_taken_in_seq_order_and_a_gap_or_a_repeat_is_refused() {
        use crate::server::testing::{batch, batch_ref, runtime};
        let (_d, store, mut f) = fed();
        let rt = runtime();
        let q = Quotas::default();
        let mut send = |first, n| {
            let b = batch(1, first, n);
            rt.block_on(f.batch(&store, &batch_ref(&b), &q))
                .map(|()| f.next_seq)
        };
        assert_eq!(send(1, 3).unwrap(), Seq(4));
        assert_eq!(send(4, 2).unwrap(), Seq(6));
        let gap = send(8, 1).unwrap_err();
        assert_eq!(gap.code, ErrorCode::SeqGap);
        assert!(gap.message.contains("expected 6"), "{}", gap.message);
        let repeat = send(4, 2).unwrap_err();
        assert_eq!(repeat.code, ErrorCode::SeqGap);
        assert_eq!(
            send(6, 1).unwrap(),
            Seq(7),
            "a refused batch changes nothing"
        );
        assert_eq!(rt.block_on(f.group.drained()), Seq(6));
    }

    #[test]
    fn tags_label_only_seqs_already_sent() {
        use crate::server::testing::{batch, batch_ref, runtime};
        use rewind_formats::message::{TagInfo, TagKind};
        let (_d, store, mut f) = fed();
        let rt = runtime();
        let b = batch(1, 1, 2);
        rt.block_on(f.batch(&store, &batch_ref(&b), &Quotas::default()))
            .unwrap();
        let tag = |seq| Tag {
            group: "g".into(),
            generation: 1,
            tag: TagInfo {
                seq: Seq(seq),
                kind: TagKind::User,
                timestamp_ms: 5,
                name: "t".into(),
            },
        };
        assert_eq!(
            rt.block_on(f.tag(&store, &tag(3))).unwrap_err().code,
            ErrorCode::SeqGap
        );
        rt.block_on(f.tag(&store, &tag(2))).unwrap();
        rt.block_on(f.group.drained());
        assert_eq!(f.group.tags()[0].seq, Seq(2));
    }

    #[test]
    fn a_fenced_group_takes_nothing_more_from_its_session() {
        use crate::server::testing::{batch, batch_ref, runtime};
        let (_d, store, mut f) = fed();
        let rt = runtime();
        f.group.fence("failover").unwrap();
        let b = batch(1, 1, 1);
        let r = rt
            .block_on(f.batch(&store, &batch_ref(&b), &Quotas::default()))
            .unwrap_err();
        assert_eq!(r.code, ErrorCode::Fenced);
        assert!(r.message.contains("fenced"), "{}", r.message);
        assert_eq!(f.next_seq, Seq(1));
    }

    #[test]
    fn framed_records_are_stored_as_sent_and_damaged_ones_refused_naming_group_and_seq() {
        use crate::server::testing::{batch_ref, runtime};
        use rewind_formats::framed::{encode_records_framed, FramedRecord};
        use rewind_formats::message::Batch;
        use rewind_formats::records::RecordKind;
        use rewind_formats::segment::encoding::encode_record;
        let (_d, store, mut f) = fed();
        let rt = runtime();
        let plain: Vec<u8> = (0..65536u32).map(|i| (i / 300) as u8).collect();
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.include_checksum(true).unwrap();
        let mut enc = Vec::new();
        assert!(encode_record(&mut c, &plain, &mut enc));
        let framed_batch = |crc: u32| {
            let rec = FramedRecord {
                record: RecordRef {
                    disk: 0,
                    kind: RecordKind::Data,
                    offset: 0,
                    len: plain.len() as u32,
                    data: &[],
                },
                encoded: Some((&enc, crc)),
            };
            Batch::from_payload("g", 1, Seq(1), 0, 1, &encode_records_framed(&[rec]), 1)
        };
        let good = framed_batch(crc32c::crc32c(&enc));
        // A session that was not granted framed records refuses them.
        let r = rt
            .block_on(f.batch_in(&store, &batch_ref(&good), &Quotas::default(), false))
            .unwrap_err();
        assert!(
            r.message.contains("not granted framed records"),
            "{}",
            r.message
        );
        // A wrong crc: refused, naming the group, the seq and what.
        let bad = framed_batch(crc32c::crc32c(&enc) ^ 1);
        let r = rt
            .block_on(f.batch_in(&store, &batch_ref(&bad), &Quotas::default(), true))
            .unwrap_err();
        assert_eq!(r.code, ErrorCode::Protocol);
        for want in ["group g", "seq 1", "crc32c"] {
            assert!(r.message.contains(want), "{want}: {}", r.message);
        }
        // The good one goes into the chunk as it came: its table and frames, encoded.
        let req = f.framed_batch_chunk(&batch_ref(&good)).unwrap();
        let e = &req.header.records[0];
        assert_eq!(
            e.encoding,
            rewind_formats::segment::encoding::Encoding::Zstd
        );
        let at = e.data_pos as usize;
        assert_eq!(&req.buf[at..at + enc.len()], &enc[..]);
        assert_eq!(e.data_crc, crc32c::crc32c(&enc));
    }

    #[test]
    fn a_batch_for_a_group_the_hello_did_not_name_is_refused() {
        let (_d, _store, f) = fed();
        let mut fed = vec![f];
        assert!(find(&mut fed, "g").is_ok());
        let r = find(&mut fed, "h").err().unwrap();
        assert_eq!(r.code, ErrorCode::UnknownGroup);
    }
}
