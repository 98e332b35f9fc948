//! Journal segment files on disk: loading (footer or scan), torn-tail repair, sealing.
//!
//! A sealed segment ends with a footer holding its chunk list, tags and sorted extents, so start-up
//! reads one small region per segment. The open segment (and any segment whose footer does not
//! verify) is scanned chunk by chunk; the scan stops at the first chunk whose header or record data
//! fails its checksum, which is where a crash tore the tail.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rewind_formats::segment::{
    decode_chunk_header, peek_chunk, ChunkHeader, ChunkKind, ChunkSummary, FooterExtent,
    SegmentFooter, SegmentHeader, CHUNK_PREFIX_LEN, TRAILER_LEN,
};
use rewind_formats::{Seq, BLOCK};

use super::engine::{IoEngine, SyncEngine};
use super::{Result, StoreError};

/// Whether loading may change the file (the daemon) or must only read it (inspect, dump).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoadMode {
    Repair,
    ReadOnly,
}

pub(crate) fn segment_file_name(id: u64) -> String {
    format!("seg-{id:08}.rwj")
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".rwj")?
        .parse()
        .ok()
}

/// Everything a segment contributes to a group's in-memory state.
#[derive(Debug)]
pub(crate) struct LoadedSegment {
    pub(crate) header: SegmentHeader,
    pub(crate) path: PathBuf,
    /// End of the last valid chunk (where the footer is or would go).
    pub(crate) data_end: u64,
    pub(crate) file_len: u64,
    pub(crate) sealed: bool,
    pub(crate) footer: SegmentFooter,
}

impl LoadedSegment {
    /// Newest record seq in the segment. Tag chunks do not count: a tag labels an earlier seq, so
    /// a segment ending in a tag still holds records up to the chunk before it.
    pub(crate) fn last_seq(&self) -> Option<Seq> {
        self.footer
            .chunks
            .iter()
            .filter(|c| c.kind == ChunkKind::Records)
            .map(|c| c.last_seq)
            .max()
    }

    pub(crate) fn first_seq(&self) -> Option<Seq> {
        self.footer
            .chunks
            .iter()
            .filter(|c| c.kind == ChunkKind::Records)
            .map(|c| c.first_seq)
            .min()
    }
}

fn corrupt<'a>(
    what: &'static str,
    path: &'a Path,
    offset: u64,
) -> impl FnOnce(rewind_formats::DecodeError) -> StoreError + 'a {
    move |source| StoreError::Corrupt {
        what,
        path: path.to_path_buf(),
        offset,
        source,
    }
}

fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset)
        .map_err(StoreError::io("read", path))
}

/// Load one segment. In `Repair` mode a torn or unwritten tail is truncated (with a log line) and an
/// unsealed segment is sealed, so that afterwards every segment on disk is sealed.
pub(crate) fn load_segment(path: &Path, mode: LoadMode) -> Result<LoadedSegment> {
    let file = match mode {
        LoadMode::Repair => OpenOptions::new().read(true).write(true).open(path),
        LoadMode::ReadOnly => File::open(path),
    }
    .map_err(StoreError::io("open segment", path))?;
    let file_len = file.metadata().map_err(StoreError::io("stat", path))?.len();
    let mut block = vec![0u8; BLOCK];
    if file_len < BLOCK as u64 {
        return Err(StoreError::Invalid {
            what: "segment",
            why: format!(
                "{} is {file_len} bytes, shorter than its header",
                path.display()
            ),
        });
    }
    read_exact_at(&file, path, &mut block, 0)?;
    let header = SegmentHeader::decode(&block).map_err(corrupt("segment header", path, 0))?;

    if let Some(footer) = read_footer(&file, path, file_len)? {
        let data_end = footer_offset(&file, path, file_len)?;
        return Ok(LoadedSegment {
            header,
            path: path.to_path_buf(),
            data_end,
            file_len,
            sealed: true,
            footer,
        });
    }

    let (footer, data_end, stop) = scan_chunks(&file, path, file_len)?;
    let mut seg = LoadedSegment {
        header,
        path: path.to_path_buf(),
        data_end,
        file_len,
        sealed: false,
        footer,
    };
    if mode == LoadMode::Repair {
        if data_end < file_len {
            match &stop {
                Some(reason) => tracing::warn!(
                    segment = %path.display(),
                    offset = data_end,
                    file_len,
                    "truncating torn segment tail at offset {data_end} ({reason})"
                ),
                None => tracing::info!(
                    segment = %path.display(),
                    offset = data_end,
                    "trimming unwritten preallocated space at offset {data_end}"
                ),
            }
        }
        if !seg.footer.chunks.is_empty() {
            seg.file_len = seal(&mut SyncEngine, &file, path, data_end, &mut seg.footer)?;
            seg.sealed = true;
        }
    }
    Ok(seg)
}

fn footer_offset(file: &File, path: &Path, file_len: u64) -> Result<u64> {
    let mut trailer = [0u8; TRAILER_LEN];
    read_exact_at(file, path, &mut trailer, file_len - TRAILER_LEN as u64)?;
    let t = SegmentFooter::decode_trailer(&trailer, file_len).map_err(corrupt(
        "segment trailer",
        path,
        file_len - TRAILER_LEN as u64,
    ))?;
    Ok(t.footer_offset)
}

/// The footer of a sealed segment, or None if there is none or it does not verify (then the caller
/// scans; a bad footer is worth a warning, never a lost segment).
fn read_footer(file: &File, path: &Path, file_len: u64) -> Result<Option<SegmentFooter>> {
    if file_len < (BLOCK + TRAILER_LEN) as u64 || !file_len.is_multiple_of(BLOCK as u64) {
        return Ok(None);
    }
    let mut trailer = [0u8; TRAILER_LEN];
    read_exact_at(file, path, &mut trailer, file_len - TRAILER_LEN as u64)?;
    let t = match SegmentFooter::decode_trailer(&trailer, file_len) {
        Ok(t) => t,
        Err(_) => return Ok(None), // no trailer: an open segment
    };
    let body_len = usize::try_from(t.body_len).unwrap_or(usize::MAX);
    if body_len as u64 > file_len {
        return Ok(None);
    }
    let mut body = vec![0u8; body_len];
    read_exact_at(file, path, &mut body, t.footer_offset)?;
    match SegmentFooter::decode_body(&body, &t) {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            tracing::warn!(segment = %path.display(), error = %e, "segment footer does not verify; scanning chunks instead");
            Ok(None)
        }
    }
}

/// Walk the chunks from the first block, verifying each header and every record's data. Returns the
/// rebuilt footer, the end of the last valid chunk, and why the walk stopped before the end of file
/// (None when it stopped at a zero block, i.e. unwritten space, or exactly at the end).
fn scan_chunks(
    file: &File,
    path: &Path,
    file_len: u64,
) -> Result<(SegmentFooter, u64, Option<String>)> {
    let mut footer = SegmentFooter::default();
    let mut pos = BLOCK as u64;
    let mut stop = None;
    while pos + CHUNK_PREFIX_LEN as u64 <= file_len {
        let mut prefix = [0u8; CHUNK_PREFIX_LEN];
        read_exact_at(file, path, &mut prefix, pos)?;
        if prefix.iter().all(|&b| b == 0) {
            break;
        }
        let p = match peek_chunk(&prefix) {
            Ok(p) => p,
            Err(e) => {
                stop = Some(format!("chunk prefix: {e}"));
                break;
            }
        };
        if pos + p.total_len > file_len {
            stop = Some(format!(
                "chunk of {} bytes runs past the end of the file",
                p.total_len
            ));
            break;
        }
        let mut chunk = vec![0u8; p.total_len as usize];
        read_exact_at(file, path, &mut chunk, pos)?;
        let h = match decode_chunk_header(&chunk) {
            Ok(h) => h,
            Err(e) => {
                stop = Some(format!("chunk header: {e}"));
                break;
            }
        };
        if let Err(e) = rewind_formats::segment::verify_chunk_data(&h, &chunk) {
            stop = Some(format!("record data: {e}"));
            break;
        }
        add_chunk_to_footer(&mut footer, &h, pos);
        pos += p.total_len;
    }
    if stop.is_none() && pos < file_len {
        // Either a zero block (unwritten) or a prefix that cannot fit: both are not data.
        let mut probe = [0u8; CHUNK_PREFIX_LEN];
        if pos + CHUNK_PREFIX_LEN as u64 <= file_len {
            read_exact_at(file, path, &mut probe, pos)?;
        }
        if probe.iter().any(|&b| b != 0) {
            stop = Some("partial chunk".into());
        }
    }
    sort_extents(&mut footer.extents);
    Ok((footer, pos, stop))
}

/// Fold one chunk (at file position `pos`) into a footer under construction.
pub(crate) fn add_chunk_to_footer(footer: &mut SegmentFooter, h: &ChunkHeader, pos: u64) {
    footer.chunks.push(ChunkSummary {
        pos,
        first_seq: h.first_seq,
        last_seq: h.last_seq,
        timestamp_ms: h.timestamp_ms,
        kind: h.kind,
    });
    if let Some(tag) = &h.tag {
        footer.tags.push(tag.clone());
    }
    if h.kind == ChunkKind::Records {
        footer
            .extents
            .extend(h.records.iter().map(|r| r.extent(pos)));
    }
}

pub(crate) fn sort_extents(extents: &mut [FooterExtent]) {
    extents.sort_unstable_by_key(|e| (e.disk, e.offset, e.seq));
}

/// Write the footer at `data_end` (BLOCK aligned), cut the file there, and make it durable, the
/// write and the fdatasync through `engine` (the writer's, so tests can fail them). Returns the
/// new file length.
pub(crate) fn seal(
    engine: &mut dyn IoEngine,
    file: &File,
    path: &Path,
    data_end: u64,
    footer: &mut SegmentFooter,
) -> Result<u64> {
    sort_extents(&mut footer.extents);
    let bytes = footer.encode(data_end);
    engine
        .write_at(file, &bytes, data_end)
        .map_err(StoreError::io("write footer", path))?;
    let len = data_end + bytes.len() as u64;
    file.set_len(len)
        .map_err(StoreError::io("truncate", path))?;
    engine
        .sync_all(&[file.as_raw_fd()])
        .map_err(StoreError::io("fdatasync", path))?;
    Ok(len)
}
