//! A group's cache log: the BATCH and TAG frames an agent sent, exactly as they came off the wire,
//! appended to segment files `GROUP/SEQ.seg` (SEQ: the first batch seq in the segment, 20
//! digits). Wire frames carry a header crc and a payload crc, so a torn tail after a crash is
//! found by reading frames until one does not verify (and cut there); nothing else is needed on
//! disk.
//!
//! Positions: the log is one stream of bytes across its segments; a [`Pos`] is an offset into
//! it, counted from the first segment present when the relay started (freed segments keep their
//! place). The forwarder reads up to the synced end; out-of-band frames (HASHES, reports) are
//! ordered by the position they must follow.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rewind_formats::frame::{blocking, FrameKind};
use rewind_formats::message::{BatchRef, Tag};
use rewind_formats::Seq;

/// A byte offset in a group's log (see the module's doc).
pub(crate) type Pos = u64;

/// A segment is sealed and a new one started once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// One segment file.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    /// Where its first byte sits in the log.
    pub(crate) base: Pos,
    pub(crate) len: u64,
    /// The last batch seq it holds (0: none yet).
    pub(crate) last_seq: Seq,
}

/// What one frame of the log is, as far as ordering goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A batch of seqs first..=last.
    Batch { first: Seq, last: Seq },
    /// A tag labelling `seq`.
    Tag { seq: Seq },
}

/// What a frame in the log is (None: a kind the log never holds).
pub(crate) fn entry(kind: FrameKind, version: u16, payload: &[u8]) -> Option<Entry> {
    match kind {
        FrameKind::Batch => {
            let b = BatchRef::decode(payload).ok()?;
            Some(Entry::Batch {
                first: b.first_seq,
                last: Seq(b.first_seq.0 + u64::from(b.record_count) - 1),
            })
        }
        FrameKind::Tag => match rewind_formats::Message::decode_version(version, kind, payload) {
            Ok(rewind_formats::Message::Tag(Tag { tag, .. })) => Some(Entry::Tag { seq: tag.seq }),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn segment_path(dir: &Path, first_seq: Seq) -> PathBuf {
    dir.join(format!("{:020}.seg", first_seq.0))
}

/// The segments of a group's directory, in order, each scanned frame by frame; a torn or
/// corrupt tail of the last one is cut off (what a crash mid-append leaves). Damage anywhere
/// else is an error naming the file and offset: frames the relay acknowledged are in it.
pub(crate) fn scan(dir: &Path) -> Result<Vec<Segment>> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading cache directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let mut base = 0;
    let n = names.len();
    for (i, path) in names.into_iter().enumerate() {
        let (good, last_seq, err) = scan_file(&path)?;
        let file_len = fs::metadata(&path)?.len();
        if good < file_len {
            if i + 1 < n {
                bail!(
                    "cache segment {} is damaged at byte {good} ({}), and later segments follow: \
                     the relay will not guess what is lost; move the group's cache directory away \
                     and let the agent resync",
                    path.display(),
                    err.unwrap_or_default()
                );
            }
            tracing::warn!(path = %path.display(), at = good, len = file_len,
                "cutting the torn tail of a cache segment (a crash during an append that was never acknowledged)");
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(good)?;
            f.sync_all()?;
        }
        if good == 0 && i + 1 == n {
            // An empty last segment (made just before a crash): nothing in it.
            fs::remove_file(&path)?;
            continue;
        }
        out.push(Segment {
            path,
            base,
            len: good,
            last_seq,
        });
        base += good;
    }
    Ok(out)
}

/// The length of the valid frames at the start of `path`, the last batch seq among them, and
/// why reading stopped early, if it did.
fn scan_file(path: &Path) -> Result<(u64, Seq, Option<String>)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut good = 0u64;
    let mut last = Seq(0);
    loop {
        match blocking::read_frame(&mut r) {
            Ok(None) => return Ok((good, last, None)),
            Ok(Some((h, payload))) => match entry(h.kind, h.version, &payload) {
                Some(e) => {
                    if let Entry::Batch { last: l, .. } = e {
                        last = l;
                    }
                    good += (rewind_formats::frame::FRAME_HEADER_LEN + payload.len()) as u64;
                }
                None => {
                    return Ok((good, last, Some(format!("a {} frame", h.kind.name()))));
                }
            },
            Err(e) => return Ok((good, last, Some(e.to_string()))),
        }
    }
}

/// Reads frames of a log from a position on, across segments (the forwarder's cursor).
pub(crate) struct Cursor {
    /// The next position to read.
    pub(crate) pos: Pos,
    file: Option<(PathBuf, BufReader<File>)>,
}

impl Cursor {
    pub(crate) fn new(pos: Pos) -> Cursor {
        Cursor { pos, file: None }
    }

    /// The next whole frame at the cursor, if `synced_end` is past it; `segments` is the log's
    /// current list. Returns the frame's bytes.
    pub(crate) fn next(
        &mut self,
        segments: &[Segment],
        synced_end: Pos,
    ) -> Result<Option<Vec<u8>>> {
        if self.pos >= synced_end {
            return Ok(None);
        }
        let Some(seg) = segments
            .iter()
            .find(|s| s.base <= self.pos && self.pos < s.base + s.len)
        else {
            // The cursor sits at the end of a segment: move to the next one.
            match segments.iter().find(|s| s.base >= self.pos) {
                Some(s) if s.len > 0 => self.pos = s.base,
                _ => return Ok(None),
            }
            return self.next(segments, synced_end);
        };
        let off = self.pos - seg.base;
        let reopen = !matches!(&self.file, Some((p, _)) if *p == seg.path);
        if reopen {
            let mut f =
                File::open(&seg.path).with_context(|| format!("opening {}", seg.path.display()))?;
            f.seek(SeekFrom::Start(off))?;
            self.file = Some((seg.path.clone(), BufReader::with_capacity(1 << 20, f)));
        }
        let (_, r) = self.file.as_mut().expect("opened");
        if !reopen {
            // A BufReader's position may be ahead of the cursor only if a read failed midway.
            let at = r.stream_position()?;
            if at != off {
                r.seek(SeekFrom::Start(off))?;
            }
        }
        let mut head = [0u8; rewind_formats::frame::FRAME_HEADER_LEN];
        r.read_exact(&mut head)
            .with_context(|| format!("reading {} at {off}", seg.path.display()))?;
        let h = rewind_formats::frame::FrameHeader::decode(&head)
            .with_context(|| format!("frame header in {} at {off}", seg.path.display()))?;
        let mut frame = head.to_vec();
        frame.resize(head.len() + h.payload_len as usize, 0);
        r.read_exact(&mut frame[head.len()..])
            .with_context(|| format!("reading {} at {off}", seg.path.display()))?;
        h.verify_payload(&frame[head.len()..])
            .with_context(|| format!("frame payload in {} at {off}", seg.path.display()))?;
        self.pos += frame.len() as u64;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewind_formats::message::Message;

    fn batch_frame(first: u64) -> Vec<u8> {
        Message::Batch(crate::server::testing::batch(1, first, 1)).to_frame()
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_cursor_reads_every_whole_frame_in_order() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (batch_frame(1), batch_frame(2), batch_frame(3));
        let mut seg1 = a.clone();
        seg1.extend(&b);
        fs::write(segment_path(d.path(), Seq(1)), &seg1).unwrap();
        // The second segment ends in half a frame: what a crash mid-append leaves.
        let mut seg2 = c.clone();
        seg2.extend(&batch_frame(4)[..50]);
        fs::write(segment_path(d.path(), Seq(3)), &seg2).unwrap();
        let segs = scan(d.path()).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            (segs[0].base, segs[0].len, segs[0].last_seq),
            (0, seg1.len() as u64, Seq(2))
        );
        assert_eq!(
            (segs[1].base, segs[1].len, segs[1].last_seq),
            (seg1.len() as u64, c.len() as u64, Seq(3))
        );
        assert_eq!(
            fs::metadata(&segs[1].path).unwrap().len(),
            c.len() as u64,
            "cut on disk"
        );
        let end = segs[1].base + segs[1].len;
        let mut cur = Cursor::new(0);
        let mut got = Vec::new();
        while let Some(f) = cur.next(&segs, end).unwrap() {
            got.push(f);
        }
        assert_eq!(got, vec![a, b, c]);
        assert_eq!(cur.pos, end);
    }

    #[test]
    fn damage_before_the_last_segment_is_refused_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut bad = batch_frame(1);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        fs::write(segment_path(d.path(), Seq(1)), &bad).unwrap();
        fs::write(segment_path(d.path(), Seq(2)), batch_frame(2)).unwrap();
        let e = format!("{:#}", scan(d.path()).unwrap_err());
        assert!(
            e.contains("00000000000000000001.seg") && e.contains("damaged"),
            "{e}"
        );
    }
}
