//! `rewind-mtd dump`: write a view to a raw image file (also how a point is restored to a file).
//!
//! A point's bytes come from the base image (laid out like the disk) and from journal segments
//! (laid out in arrival order). Read in disk order, a journal of small random writes costs one
//! small read per piece, each somewhere else in the segments: about 6 s per GiB of random
//! 4 KiB records. So the dump goes in two passes over each window of the disk: the base image
//! and zeroes in disk order (skipping the base image's holes), then the journal's pieces sorted
//! by their place in the segments and read in large runs, each piece written to its place in the
//! image.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::store::index::Source;
use crate::views::view::{sparse_runs, Allocation, View};

/// The image is planned and written this many bytes of disk at a time: the journal pieces of one
/// window are sorted together (a few tens of MiB of plan for a window of 4 KiB pieces).
const WINDOW: u64 = 1 << 30;
/// Bytes of the disk per first-pass step.
const CHUNK: usize = 1 << 20;
/// Readers at once: the device's queue depth, not one thread, sets the pace.
const READERS: usize = 8;
/// Journal pieces closer than this in a segment are read in one go, the bytes between them
/// thrown away: cheaper than another request.
const GAP: u64 = 128 << 10;
/// The longest read of a segment.
const RUN: u64 = 4 << 20;

/// A byte-count progress bar (indicatif hides it when stderr is not a terminal).
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template"),
    );
    bar
}

/// One piece of the journal to copy: `len` bytes at `pos` of segment `segment`, to disk offset
/// `offset`.
#[derive(Clone, Copy, Debug)]
struct JournalPiece {
    segment: u64,
    pos: u64,
    len: u64,
    offset: u64,
}

/// Copy the view into `out` (created or truncated, sized to the disk). All-zero chunks are left as
/// holes, so the image is sparse. Shows a progress bar when stderr is a terminal.
pub fn dump(view: &View, out: &Path) -> Result<u64> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let size = view.size_bytes();
    f.set_len(size)
        .with_context(|| format!("sizing {} to {size} bytes", out.display()))?;
    let bar = progress_bar(size);
    let d = Dumper {
        view,
        f: &f,
        out,
        bar: &bar,
    };
    let mut start = 0;
    while start < size {
        let end = size.min(start + WINDOW);
        d.window(start, end)?;
        start = end;
    }
    f.sync_all()
        .with_context(|| format!("fsync {}", out.display()))?;
    bar.finish_and_clear();
    Ok(size)
}

struct Dumper<'a> {
    view: &'a View,
    f: &'a File,
    out: &'a Path,
    bar: &'a ProgressBar,
}

impl Dumper<'_> {
    /// Copies `[start, end)` of the disk: first everything but the journal's pieces, in disk
    /// order, then the journal's pieces in segment order.
    fn window(&self, start: u64, end: u64) -> Result<()> {
        let journal = Mutex::new(Vec::new());
        let files = Mutex::new(BTreeMap::new());
        let chunks: Vec<u64> = (start..end).step_by(CHUNK).collect();
        parallel(chunks.len(), |i| {
            let off = chunks[i];
            let len = CHUNK.min((end - off) as usize);
            self.chunk(off, len, &journal, &files)
        })?;
        let mut journal = journal.into_inner().expect("no reader panicked");
        let files = files.into_inner().expect("no reader panicked");
        journal.sort_unstable_by_key(|p: &JournalPiece| (p.segment, p.pos));
        let runs = runs(&journal);
        parallel(runs.len(), |i| {
            self.journal_run(&journal[runs[i].clone()], &files)
        })
    }

    /// First pass over one chunk: the base image's bytes and zeroes are written (unless all of
    /// the chunk is zero), the journal's pieces are left as zeroes and noted in `journal`.
    fn chunk(
        &self,
        off: u64,
        len: usize,
        journal: &Mutex<Vec<JournalPiece>>,
        files: &Mutex<BTreeMap<u64, Arc<File>>>,
    ) -> Result<()> {
        let Some(plan) = self.view.plan(off, off + len as u64)? else {
            // A long-term point: its image reads in disk order.
            let mut buf = vec![0u8; len];
            self.view.read_at(&mut buf, off)?;
            self.bar.inc(len as u64);
            return self.write_nonzero(&buf, off);
        };
        // A base image that is a hole here (never merged into) reads as zeroes: not reading it
        // saves the kernel zeroing page after page of it (a third of a dump's time when the
        // journal holds a disk's random writes and the base nothing).
        let base_data = plan.pieces.iter().any(|p| p.source == Source::Base)
            && sparse_runs(&plan.base, off, len as u64)
                .map_err(|e| self.view.read_error("base image", off, e))?
                .iter()
                .any(|&(_, _, a)| a == Allocation::Data);
        let mut buf = vec![0u8; len];
        let mut mine = Vec::new();
        for p in &plan.pieces {
            let lo = (p.offset - off) as usize;
            let out = &mut buf[lo..lo + p.len as usize];
            match p.source {
                Source::Segment { segment_id, pos } => {
                    mine.push(JournalPiece {
                        segment: segment_id,
                        pos,
                        len: p.len,
                        offset: p.offset,
                    });
                    continue;
                }
                Source::Base if !base_data => {}
                // Encoded pieces decompress their frames in place (through the frame cache):
                // there is no run of plain bytes on disk to batch.
                Source::Base | Source::Zero | Source::Encoded { .. } => {
                    self.view.read_piece(&plan, p, out)?
                }
            }
            self.bar.inc(p.len);
        }
        if !mine.is_empty() {
            let mut files = files.lock().expect("no reader panicked");
            for (id, file) in &plan.segments {
                files.entry(*id).or_insert_with(|| file.clone());
            }
            drop(files);
            journal.lock().expect("no reader panicked").extend(mine);
        }
        self.write_nonzero(&buf, off)
    }

    /// Second pass: one read of the segment bytes that `pieces` (sorted, all in one segment,
    /// close together) span; each piece written to its place.
    fn journal_run(&self, pieces: &[JournalPiece], files: &BTreeMap<u64, Arc<File>>) -> Result<()> {
        let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
        let span = pieces.iter().map(|p| p.pos + p.len).max().unwrap_or(0) - first.pos;
        let mut buf = vec![0u8; span as usize];
        let file = files.get(&first.segment).expect("noted with its pieces");
        file.read_exact_at(&mut buf, first.pos).map_err(|e| {
            self.view
                .read_error("journal segment", first.offset.min(last.offset), e)
        })?;
        for p in pieces {
            let lo = (p.pos - first.pos) as usize;
            self.write_nonzero(&buf[lo..lo + p.len as usize], p.offset)?;
            self.bar.inc(p.len);
        }
        Ok(())
    }

    /// Writes `buf` at `off` unless it is all zeroes (the image is zero there already: the first
    /// pass leaves the journal's pieces as zeroes).
    fn write_nonzero(&self, buf: &[u8], off: u64) -> Result<()> {
        if buf.iter().any(|&b| b != 0) {
            self.f
                .write_all_at(buf, off)
                .with_context(|| format!("writing {} at offset {off}", self.out.display()))?;
        }
        Ok(())
    }
}

/// The runs of `pieces` (sorted by segment and position) read in one go each: same segment, at
/// most [`GAP`] apart, at most [`RUN`] long (a longer piece is a run of its own).
fn runs(pieces: &[JournalPiece]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end_pos = 0;
    for (i, p) in pieces.iter().enumerate() {
        if i > start {
            let s = pieces[start];
            let joins =
                p.segment == s.segment && p.pos <= end_pos + GAP && p.pos + p.len - s.pos <= RUN;
            if !joins {
                out.push(start..i);
                start = i;
                end_pos = 0;
            }
        }
        end_pos = end_pos.max(p.pos + p.len);
    }
    if start < pieces.len() {
        out.push(start..pieces.len());
    }
    out
}

/// Runs `job(0..n)` on [`READERS`] threads, each taking the next index; stops at the first error
/// and returns it.
fn parallel(n: usize, job: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> Result<()> {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n || failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            job(i).inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
        }
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..READERS.min(n.max(1))).map(|_| s.spawn(work)).collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("dump reader panicked"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(segment: u64, pos: u64, len: u64) -> JournalPiece {
        JournalPiece {
            segment,
            pos,
            len,
            offset: 0,
        }
    }

    #[test]
    fn close_pieces_of_one_segment_are_read_together() {
        let p = [
            piece(1, 0, 4096),
            piece(1, 8192, 4096),
            piece(1, 8192 + 4096 + GAP, 4096),
            piece(1, 8192 + 8192 + 2 * GAP + 1, 4096),
            piece(2, 0, 4096),
            piece(2, 4096, RUN),
            piece(2, 4096 + RUN, 4096),
        ];
        assert_eq!(runs(&p), vec![0..3, 3..4, 4..5, 5..6, 6..7]);
        assert!(runs(&[]).is_empty());
    }
}
