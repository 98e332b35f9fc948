//! A long-term point read as a disk: the manifest's chunks in order, an empty entry reading as
//! zeroes, each chunk fetched on demand (through the cache) and checked against its hash.

use std::sync::Arc;

use rewind_formats::ltr::LtrManifest;

use super::chunk::{self, Hash};
use super::error::{LtrError, Result};
use super::Ltr;

pub struct ArchivedImage {
    ltr: Arc<Ltr>,
    pub seq: u64,
    pub time_ms: u64,
    pub disk_size: u64,
    chunk_size: u64,
    /// One per chunk; None for an all-zero chunk.
    chunks: Vec<Option<Hash>>,
}

impl ArchivedImage {
    pub fn open(ltr: Arc<Ltr>, group: &str, disk: &str, seq: u64) -> Result<ArchivedImage> {
        let m = ltr.manifest(group, disk, seq)?;
        Self::of(ltr, &m)
    }

    pub fn of(ltr: Arc<Ltr>, m: &LtrManifest) -> Result<ArchivedImage> {
        let chunks = m
            .chunks
            .iter()
            .map(|c| {
                if c.is_empty() {
                    Ok(None)
                } else {
                    chunk::from_hex(c)
                        .map(Some)
                        .ok_or_else(|| LtrError::Corrupt {
                            key: LtrManifest::key(&m.group, &m.disk, m.seq),
                            why: format!("chunk entry {c:?} is not a hash"),
                        })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ArchivedImage {
            ltr,
            seq: m.seq,
            time_ms: m.time_ms,
            disk_size: m.disk_size,
            chunk_size: u64::from(m.chunk_size),
            chunks,
        })
    }

    /// Fill `buf` from `offset` (the caller checked the range is within the disk).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let ix = (pos / self.chunk_size) as usize;
            let within = (pos % self.chunk_size) as usize;
            let n = (self.chunk_size as usize - within).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.chunks.get(ix).copied().flatten() {
                None => out.fill(0),
                Some(h) => {
                    let plain = self.ltr.chunk(&h, self.chunk_size as usize)?;
                    // The last chunk of a disk whose size is not a multiple is short.
                    let have = plain.len().saturating_sub(within).min(n);
                    out[..have].copy_from_slice(&plain[within..within + have]);
                    out[have..].fill(0);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Whether the chunk holding `offset` is all zeroes (stored as nothing).
    pub fn is_zero_at(&self, offset: u64) -> bool {
        self.chunks
            .get((offset / self.chunk_size) as usize)
            .is_none_or(|c| c.is_none())
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }
}
