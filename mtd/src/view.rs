//! Views: a disk of a group as of one point, read from journal and base.
//!
//! NBD, FUSE and `dump` all read through `View::read_at`. A view pins its seq, so the merger never
//! folds away history it reads.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rewind_formats::Seq;

use crate::store::group::{Group, PinGuard};
use crate::store::index::Source;
use crate::store::{Result, StoreError};

pub struct View {
    group: Arc<Group>,
    disk: usize,
    disk_name: String,
    seq: Seq,
    size_bytes: u64,
    _pin: PinGuard,
}

impl View {
    pub fn new(group: Arc<Group>, disk: usize, seq: Seq) -> Result<View> {
        let pin = group.pin(seq)?;
        let (disk_name, size_bytes) = {
            let st = group.state.read().expect("group lock");
            let d = &st.manifest.disks[disk];
            (d.name.clone(), d.size_bytes)
        };
        Ok(View {
            group,
            disk,
            disk_name,
            seq,
            size_bytes,
            _pin: pin,
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
        // Resolve under the lock, read after releasing it; cloned file handles stay valid even if
        // the merger deletes a segment meanwhile.
        let (pieces, files, base) = {
            let st = self.group.state.read().expect("group lock");
            let pieces = st.indexes[self.disk].lookup(offset, end, self.seq);
            let mut files = Vec::new();
            for p in &pieces {
                if let Source::Segment { segment_id, .. } = p.source {
                    if !files.iter().any(|(id, _)| *id == segment_id) {
                        let f = st
                            .segment_file(segment_id)
                            .ok_or_else(|| StoreError::Invalid {
                                what: "index",
                                why: format!(
                                    "group {} refers to missing segment {segment_id}",
                                    self.group.name
                                ),
                            })?;
                        files.push((segment_id, f));
                    }
                }
            }
            (pieces, files, st.bases[self.disk].clone())
        };
        for p in pieces {
            let lo = (p.offset - offset) as usize;
            let out = &mut buf[lo..lo + p.len as usize];
            match p.source {
                Source::Zero => out.fill(0),
                Source::Base => read_full(&base, out, p.offset)
                    .map_err(|e| self.read_error("base image", p.offset, e))?,
                Source::Segment { segment_id, pos } => {
                    let f = &files
                        .iter()
                        .find(|(id, _)| *id == segment_id)
                        .expect("collected")
                        .1;
                    f.read_exact_at(out, pos)
                        .map_err(|e| self.read_error("journal segment", p.offset, e))?;
                }
            }
        }
        Ok(())
    }

    fn read_error(&self, what: &str, offset: u64, source: std::io::Error) -> StoreError {
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
