//! The `image` command: replicate a real disk image (the demo's stand-in for the agent).
//!
//! Without `--since`, every non-zero 64 KiB block of the image is sent (a fresh target's base is
//! zero). With `--since OLD`, every 4 KiB block that differs from OLD is sent: as data, or as a
//! zero record when it became all zero. Adjacent blocks of the same kind are coalesced into one
//! record of up to 1 MiB. When everything is acked, an app-consistent TAG labels the last seq.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rewind_formats::batch::{BatchBuilder, Compression};
use rewind_formats::{RecordKind, RecordRef, Seq, Tag, TagInfo, TagKind, SECTOR};

use crate::error::{Error, Result};
use crate::run::{build_hello, open};
use crate::session::{Session, SessionLimits};
use crate::units::Addr;

/// Images are read, and records coalesced, within chunks of this size.
pub const CHUNK: usize = 1 << 20;
/// Unit of a full send (non-zero blocks of this size are sent).
pub const FULL_UNIT: usize = 64 << 10;
/// Unit of an incremental send (`--since`).
pub const DIFF_UNIT: usize = 4 << 10;

/// Everything the `image` command needs.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    pub addr: Addr,
    pub agent: String,
    pub group: String,
    pub disk: String,
    pub file: PathBuf,
    pub since: Option<PathBuf>,
    /// Tag name; default `image-<seq>`.
    pub tag: Option<String>,
    pub generation: u64,
    pub compression: Compression,
    pub batch_bytes: u64,
    pub max_inflight_bytes: u64,
    pub ack_timeout: Duration,
}

/// What was sent.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageSummary {
    /// First seq sent (0 when nothing was sent).
    pub first_seq: u64,
    /// Last seq sent (0 when nothing was sent).
    pub last_seq: u64,
    pub records: u64,
    /// Bytes sent as data records.
    pub data_bytes: u64,
    /// Bytes sent as zero records.
    pub zero_bytes: u64,
    pub tag: Option<String>,
    pub tag_seq: Option<u64>,
    pub seconds: f64,
}

impl std::fmt::Display for ImageSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.records == 0 {
            write!(f, "nothing to send")?;
        } else {
            write!(
                f,
                "sent seqs {}..={} ({} records: {} data bytes, {} zeroed bytes) in {:.2}s",
                self.first_seq,
                self.last_seq,
                self.records,
                self.data_bytes,
                self.zero_bytes,
                self.seconds
            )?;
        }
        match (&self.tag, self.tag_seq) {
            (Some(t), Some(s)) => write!(f, "; tag app-consistent {t} at seq {s}"),
            _ => write!(f, "; no tag (the target holds no seq yet)"),
        }
    }
}

fn all_zero(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    words
        .by_ref()
        .all(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")) == 0)
        && words.remainder().iter().all(|&x| x == 0)
}

fn read_full(f: &mut File, buf: &mut [u8], path: &Path) -> Result<()> {
    f.read_exact(buf)
        .map_err(Error::io(format!("read {}", path.display())))
}

/// Walks the changes of `file` (against `since`, or against zero) and calls `emit` with each
/// coalesced record, in offset order. Returns the image size.
pub fn scan_changes(
    file: &Path,
    since: Option<&Path>,
    mut emit: impl FnMut(RecordRef<'_>) -> Result<()>,
) -> Result<u64> {
    let open = |p: &Path| -> Result<(File, u64)> {
        let f = File::open(p).map_err(Error::io(format!("open {}", p.display())))?;
        let len = f
            .metadata()
            .map_err(Error::io(format!("stat {}", p.display())))?
            .len();
        Ok((f, len))
    };
    let (mut new, size) = open(file)?;
    if size == 0 || size % SECTOR != 0 {
        return Err(Error::Invalid(format!(
            "{}: size {size} is not a positive multiple of {SECTOR}",
            file.display()
        )));
    }
    let mut old = match since {
        Some(p) => {
            let (f, len) = open(p)?;
            if len != size {
                return Err(Error::Invalid(format!(
                    "{} has {len} bytes but {} has {size}: images must be the same size",
                    p.display(),
                    file.display()
                )));
            }
            Some((f, p))
        }
        None => None,
    };
    let unit = if old.is_some() { DIFF_UNIT } else { FULL_UNIT };
    let mut nbuf = vec![0u8; CHUNK];
    let mut obuf = vec![0u8; if old.is_some() { CHUNK } else { 0 }];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(CHUNK as u64) as usize;
        read_full(&mut new, &mut nbuf[..n], file)?;
        if let Some((f, p)) = old.as_mut() {
            read_full(f, &mut obuf[..n], p)?;
        }
        // Classify each unit, then coalesce runs of the same class.
        let mut run: Option<(RecordKind, usize)> = None; // (kind, start within chunk)
        let mut i = 0;
        while i <= n {
            let class = if i == n {
                None
            } else {
                let end = (i + unit).min(n);
                let blk = &nbuf[i..end];
                let changed = match old {
                    Some(_) => blk != &obuf[i..end],
                    None => !all_zero(blk),
                };
                if !changed {
                    None
                } else if old.is_some() && all_zero(blk) {
                    Some(RecordKind::Zero)
                } else {
                    Some(RecordKind::Data)
                }
            };
            if let Some((kind, start)) = run {
                if class != Some(kind) {
                    let len = i - start;
                    emit(RecordRef {
                        disk: 0,
                        kind,
                        offset: pos + start as u64,
                        len: len as u32,
                        data: if kind == RecordKind::Data {
                            &nbuf[start..i]
                        } else {
                            &[]
                        },
                    })?;
                    run = None;
                }
            }
            if run.is_none() {
                if let Some(kind) = class {
                    run = Some((kind, i));
                }
            }
            if i == n {
                break;
            }
            i = (i + unit).min(n);
        }
        pos += n as u64;
    }
    Ok(size)
}

/// Sends the image and tags it; returns what was sent.
pub fn send_image(cfg: &ImageConfig) -> Result<ImageSummary> {
    if let Some(name) = &cfg.tag {
        rewind_formats::validate_name(name)
            .map_err(|e| Error::Invalid(format!("tag name {name:?}: {e}")))?;
    }
    let size = std::fs::metadata(&cfg.file)
        .map_err(Error::io(format!("stat {}", cfg.file.display())))?
        .len();
    let hello_msg = build_hello(
        &cfg.agent,
        &cfg.group,
        cfg.generation,
        0,
        &[(cfg.disk.clone(), size)],
    );
    let (conn, durable, _) = open(&cfg.addr, &hello_msg)?;
    if durable > 0 && cfg.since.is_none() {
        eprintln!(
            "rewind-loadgen: warning: group {} is already at seq {durable}; without --since, \
             blocks that are zero in the image are not sent",
            cfg.group
        );
    }
    let mut session = Session::start(
        conn,
        &cfg.group,
        cfg.generation,
        durable,
        SessionLimits {
            max_inflight_bytes: cfg.max_inflight_bytes,
            stall_timeout: cfg.ack_timeout,
        },
        None,
    )?;
    let started = Instant::now();
    let mut builder = BatchBuilder::new(&cfg.group, cfg.generation, cfg.compression)
        .map_err(Error::io(format!("zstd level {}", cfg.compression)))?;
    let mut next = durable + 1;
    let mut batch_first = next;
    let mut batch_bytes = 0u64;
    let mut summary = ImageSummary {
        first_seq: 0,
        last_seq: 0,
        records: 0,
        data_bytes: 0,
        zero_bytes: 0,
        tag: None,
        tag_seq: None,
        seconds: 0.0,
    };
    let flush = |builder: &mut BatchBuilder,
                 session: &mut Session,
                 first: &mut u64,
                 next: u64,
                 bytes: &mut u64|
     -> Result<()> {
        if builder.is_empty() {
            return Ok(());
        }
        let frame = builder
            .finish(Vec::new(), Seq(*first), rewind_linux::clock::now_ms())
            .map_err(Error::io("zstd compression of a batch"))?;
        session.send_batch(&frame, next - 1, *bytes)?;
        *first = next;
        *bytes = 0;
        Ok(())
    };
    scan_changes(&cfg.file, cfg.since.as_deref(), |rec| {
        builder.push(&rec);
        summary.records += 1;
        if rec.kind == RecordKind::Data {
            summary.data_bytes += u64::from(rec.len);
        } else {
            summary.zero_bytes += u64::from(rec.len);
        }
        batch_bytes += rec.data.len() as u64;
        next += 1;
        if builder.raw_len() as u64 >= cfg.batch_bytes {
            flush(
                &mut builder,
                &mut session,
                &mut batch_first,
                next,
                &mut batch_bytes,
            )?;
        }
        Ok(())
    })?;
    flush(
        &mut builder,
        &mut session,
        &mut batch_first,
        next,
        &mut batch_bytes,
    )?;
    let last = next - 1;
    if summary.records > 0 {
        summary.first_seq = durable + 1;
        summary.last_seq = last;
        session.wait_durable(last)?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if last > 0 {
        let name = cfg.tag.clone().unwrap_or_else(|| format!("image-{last}"));
        session.send_tag(&Tag {
            group: cfg.group.clone(),
            generation: cfg.generation,
            tag: TagInfo {
                seq: Seq(last),
                kind: TagKind::AppConsistent,
                timestamp_ms: rewind_linux::clock::now_ms(),
                name: name.clone(),
            },
        })?;
        // Tags are not acked: the tagged seq is durable already; a graceful close lets the
        // target read the TAG before it sees our end of stream.
        summary.tag = Some(name);
        summary.tag_seq = Some(last);
    }
    session.finish();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(file: &Path, since: Option<&Path>) -> Vec<(RecordKind, u64, u32, Vec<u8>)> {
        let mut v = Vec::new();
        scan_changes(file, since, |r| {
            v.push((r.kind, r.offset, r.len, r.data.to_vec()));
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn full_scan_sends_non_zero_64k_blocks_coalesced_within_1m() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.img");
        let size = 3 * CHUNK + 4096;
        let mut img = vec![0u8; size];
        img[10] = 1; // block 0
        img[FULL_UNIT + 5] = 2; // block 1 (coalesces with 0)
        img[5 * FULL_UNIT] = 3; // block 5 alone
        for b in &mut img[CHUNK - 10..CHUNK + 10] {
            *b = 4; // last block of chunk 0 and first of chunk 1: two records
        }
        img[size - 1] = 5; // the 4 KiB tail
        std::fs::write(&p, &img).unwrap();
        let recs = collect(&p, None);
        let spans: Vec<(u64, u32)> = recs.iter().map(|r| (r.1, r.2)).collect();
        let f = FULL_UNIT as u64;
        assert_eq!(
            spans,
            vec![
                (0, 2 * FULL_UNIT as u32),
                (5 * f, FULL_UNIT as u32),
                (CHUNK as u64 - f, FULL_UNIT as u32),
                (CHUNK as u64, FULL_UNIT as u32),
                (3 * CHUNK as u64, 4096),
            ]
        );
        for (kind, off, len, data) in &recs {
            assert_eq!(*kind, RecordKind::Data);
            assert_eq!(
                &img[*off as usize..*off as usize + *len as usize],
                &data[..]
            );
        }
    }

    #[test]
    fn diff_scan_sends_changed_4k_blocks_and_zero_records() {
        let dir = tempfile::tempdir().unwrap();
        let (po, pn) = (dir.path().join("old.img"), dir.path().join("new.img"));
        let size = CHUNK + 8192;
        let old: Vec<u8> = (0..size).map(|i| (i % 251) as u8 | 1).collect();
        let mut new = old.clone();
        new[0] ^= 0xff; // block 0 changed
        new[4096] ^= 0xff; // block 1 changed: coalesced
        new[3 * 4096..4 * 4096].fill(0); // block 3 zeroed
        new[4 * 4096..5 * 4096].fill(0); // block 4 zeroed: coalesced
        new[size - 1] ^= 0xff; // last block
        std::fs::write(&po, &old).unwrap();
        std::fs::write(&pn, &new).unwrap();
        let recs = collect(&pn, Some(&po));
        let spans: Vec<(RecordKind, u64, u32)> = recs.iter().map(|r| (r.0, r.1, r.2)).collect();
        assert_eq!(
            spans,
            vec![
                (RecordKind::Data, 0, 8192),
                (RecordKind::Zero, 3 * 4096, 8192),
                (RecordKind::Data, (size - 4096) as u64, 4096),
            ]
        );
        assert!(recs[1].3.is_empty());
        assert_eq!(recs[0].3, new[..8192]);
        // Replaying the records onto OLD gives NEW.
        let mut replay = old.clone();
        for (kind, off, len, data) in &recs {
            let r = &mut replay[*off as usize..(*off + u64::from(*len)) as usize];
            match kind {
                RecordKind::Zero => r.fill(0),
                _ => r.copy_from_slice(data),
            }
        }
        assert_eq!(replay, new);
        // Different sizes are refused.
        std::fs::write(&po, &old[..4096]).unwrap();
        assert!(scan_changes(&pn, Some(&po), |_| Ok(())).is_err());
    }
}
