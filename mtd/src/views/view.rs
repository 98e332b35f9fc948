//! Views: a disk of a group as of one point, read from journal and base.
//!
//! NBD, FUSE and `dump` all read through `View::read_at`. A view pins its seq, so the merger never
//! folds away history it reads. A point older than the journal window is read from its
//! long-term image (`crate::ltr`) when one is kept: the same view, another source.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rewind_formats::Seq;

use crate::ltr::image::ArchivedImage;
use crate::ltr::Ltr;
use crate::store::group::Group;
use crate::store::index::{Piece, Source};
use crate::store::pins::PinGuard;
use crate::store::points::{long_term_may_answer, PointSpec};
use crate::store::reads::ReadPlan;
use crate::store::{Result, Store, StoreError};

pub struct View {
    group: Arc<Group>,
    disk: usize,
    disk_name: String,
    seq: Seq,
    size_bytes: u64,
    backing: Backing,
}

/// Where a view's bytes come from.
enum Backing {
    /// The journal and base image, the seq pinned.
    Journal(#[allow(dead_code)] PinGuard),
    /// A long-term point's image in object storage.
    LongTerm(ArchivedImage),
}

impl View {
    /// A read view of one disk of a group at a point. (Opening lives here, not on `Store`, so
    /// that the store does not depend on the read path built over it.)
    pub fn open(store: &Store, group: &str, disk: &str, spec: &PointSpec) -> Result<View> {
        let g = store.group(group)?;
        let in_journal = g
            .resolve_disk_ix(disk, spec)
            .and_then(|(disk_ix, seq)| View::new(g.clone(), disk_ix, seq));
        match in_journal {
            Err(e) if long_term_may_answer(&e, spec) => {
                match store
                    .ltr()
                    .and_then(|l| Some((l.resolve(group, disk, spec)?, l)))
                {
                    Some((kept, ltr)) => View::long_term(g, disk, ltr, kept.seq),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// A view of the long-term point `seq` of `disk`.
    pub fn long_term(group: Arc<Group>, disk: &str, ltr: Arc<Ltr>, seq: u64) -> Result<View> {
        let ix = group
            .disk_index(disk)
            .ok_or_else(|| StoreError::UnknownDisk {
                group: group.name.clone(),
                disk: disk.into(),
            })?;
        let image = ArchivedImage::open(ltr, &group.name, disk, seq)
            .map_err(|e| StoreError::LongTerm(e.to_string()))?;
        Ok(View {
            disk: ix,
            disk_name: disk.to_string(),
            seq: Seq(seq),
            size_bytes: image.disk_size,
            backing: Backing::LongTerm(image),
            group,
        })
    }

    /// Whether the view reads a long-term point (not the journal).
    pub fn is_long_term(&self) -> bool {
        matches!(self.backing, Backing::LongTerm(_))
    }

    pub fn new(group: Arc<Group>, disk: usize, seq: Seq) -> Result<View> {
        let pin = group.pin(seq)?;
        let (disk_name, size_bytes) = group.disk(disk);
        Ok(View {
            group,
            disk,
            disk_name,
            seq,
            size_bytes,
            backing: Backing::Journal(pin),
        })
    }

    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    pub fn disk_name(&self) -> &str {
        &self.disk_name
    }

    /// Fill `buf` with the disk's bytes at `offset` as of the view's seq.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.size_bytes)
            .ok_or_else(|| StoreError::Invalid {
                what: "read",
                why: format!(
                    "disk {}/{} offset {offset} length {} is past its end ({} bytes)",
                    self.group.name,
                    self.disk_name,
                    buf.len(),
                    self.size_bytes
                ),
            })?;
        if let Backing::LongTerm(image) = &self.backing {
            return image.read_at(buf, offset).map_err(|e| {
                StoreError::LongTerm(format!(
                    "disk {}/{} seq {} at offset {offset}: {e}",
                    self.group.name, self.disk_name, self.seq.0
                ))
            });
        }
        let plan = self.group.read_plan(self.disk, offset, end, self.seq)?;
        for p in &plan.pieces {
            let lo = (p.offset - offset) as usize;
            self.read_piece(&plan, p, &mut buf[lo..lo + p.len as usize])?;
        }
        Ok(())
    }

    /// Where the bytes of `[offset, end)` are, for readers that order their reads themselves
    /// (`dump`); `None` for a long-term view. Resolved under the lock, read after releasing it:
    /// the plan's cloned file handles stay valid even if the merger deletes a segment meanwhile.
    pub(crate) fn plan(&self, offset: u64, end: u64) -> Result<Option<ReadPlan>> {
        match self.backing {
            Backing::LongTerm(_) => Ok(None),
            Backing::Journal(_) => self
                .group
                .read_plan(self.disk, offset, end, self.seq)
                .map(Some),
        }
    }

    /// Fills `out` (the piece's length) with the bytes of piece `p` of `plan`.
    pub(crate) fn read_piece(&self, plan: &ReadPlan, p: &Piece, out: &mut [u8]) -> Result<()> {
        match p.source {
            Source::Zero => out.fill(0),
            Source::Base => read_full(&plan.base, out, p.offset)
                .map_err(|e| self.read_error("base image", p.offset, e))?,
            Source::Segment { segment_id, pos } => plan
                .segment(segment_id)
                .read_exact_at(out, pos)
                .map_err(|e| self.read_error("journal segment", p.offset, e))?,
            Source::Encoded {
                segment_id,
                data_pos,
                len,
                skip,
            } => crate::store::frames::Record {
                file: plan.segment(segment_id),
                segment_id,
                data_pos,
                len,
            }
            .read_at(out, skip, &self.group.frames, plan.frame_generation)
            .map_err(|e| self.read_error("encoded journal record", p.offset, e))?,
        }
        Ok(())
    }

    /// The error of a failed read of the journal or base image at disk offset `offset`.
    pub(crate) fn read_error(&self, what: &str, offset: u64, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op: "read",
            path: format!(
                "{} of disk {}/{} at offset {offset}",
                what, self.group.name, self.disk_name
            )
            .into(),
            source,
        }
    }
}

/// pread that treats bytes past the end of a (sparse, short) file as zeroes.
fn read_full(f: &std::fs::File, out: &mut [u8], pos: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < out.len() {
        let n = f.read_at(&mut out[done..], pos + done as u64)?;
        if n == 0 {
            out[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

/// What a range of a disk holds, for NBD block status and FUSE's SEEK_DATA: data, or zeroes that
/// cost nothing to read (a zero or trim record, or a hole in the sparse base image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    Data,
    Zero,
}

/// One run of a disk with the same allocation, `[offset, offset + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub allocation: Allocation,
}

impl View {
    /// The allocation of `[offset, offset + len)` (clipped to the disk), adjacent runs merged.
    pub fn extents(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size_bytes);
        if offset >= end {
            return Ok(Vec::new());
        }
        if let Backing::LongTerm(image) = &self.backing {
            let mut out = Vec::new();
            let cs = image.chunk_size();
            let mut pos = offset;
            while pos < end {
                let next = ((pos / cs + 1) * cs).min(end);
                let a = if image.is_zero_at(pos) {
                    Allocation::Zero
                } else {
                    Allocation::Data
                };
                push_extent(&mut out, pos, next - pos, a);
                pos = next;
            }
            return Ok(out);
        }
        let (pieces, base) = self.group.extent_plan(self.disk, offset, end, self.seq);
        let mut out: Vec<Extent> = Vec::new();
        for p in pieces {
            match p.source {
                Source::Zero => push_extent(&mut out, p.offset, p.len, Allocation::Zero),
                Source::Segment { .. } | Source::Encoded { .. } => {
                    push_extent(&mut out, p.offset, p.len, Allocation::Data)
                }
                Source::Base => {
                    for (o, l, a) in sparse_runs(&base, p.offset, p.len)
                        .map_err(|e| self.read_error("base image", p.offset, e))?
                    {
                        push_extent(&mut out, o, l, a);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Append a run, merging it into the previous one when both have the same allocation.
pub fn push_extent(out: &mut Vec<Extent>, offset: u64, len: u64, allocation: Allocation) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.allocation == allocation && last.offset + last.len == offset {
            last.len += len;
            return;
        }
    }
    out.push(Extent {
        offset,
        len,
        allocation,
    });
}

/// Data and hole runs of a sparse file in `[offset, offset + len)`, by SEEK_DATA / SEEK_HOLE. Bytes
/// past the end of the file are holes.
pub fn sparse_runs(
    f: &std::fs::File,
    offset: u64,
    len: u64,
) -> std::io::Result<Vec<(u64, u64, Allocation)>> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsRawFd;
    let end = offset + len;
    let mut out = Vec::new();
    let mut pos = offset;
    while pos < end {
        let data = match lseek(f.as_raw_fd(), pos as i64, Whence::SeekData) {
            Ok(d) => (d as u64).min(end),
            Err(nix::errno::Errno::ENXIO) => end,
            Err(e) => return Err(e.into()),
        };
        if data > pos {
            out.push((pos, data - pos, Allocation::Zero));
        }
        if data >= end {
            break;
        }
        let hole = match lseek(f.as_raw_fd(), data as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(end),
            Err(nix::errno::Errno::ENXIO) => end,
            Err(e) => return Err(e.into()),
        };
        out.push((data, hole - data, Allocation::Data));
        pos = hole;
    }
    Ok(out)
}
