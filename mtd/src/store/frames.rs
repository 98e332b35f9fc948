//! Reading zstd-encoded journal records (see `rewind_formats::segment::encoding`): the one place
//! that turns a record's frame table and frames back into plain bytes, for views (NBD, FUSE,
//! verify, dump), the merger and the tests.
//!
//! A piece read fetches the record's table, then only the frames the piece covers, in one read,
//! and decompresses them. Hot frames (and tables) stay decompressed in the group's
//! [`FrameCache`], so repeated small reads of one region cost a copy.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use hashlink::LruCache;
use rewind_formats::segment::encoding::{
    decode_frame, decode_record, frame_offset, frame_range, read_table, stored_len, table_len,
    FRAME_SPAN,
};
use rewind_formats::segment::{ChunkHeader, Encoding};
use rewind_formats::DecodeError;

/// Frames a group's cache keeps: 1024 x 32 KiB = 32 MiB of decompressed bytes per group, enough
/// for a few views' working sets without letting many groups pin much memory.
pub(crate) const CACHED_FRAMES: usize = 1024;

/// Frame tables a group's cache keeps: a table is 4 bytes per frame (128 for a 1 MiB record),
/// so 16384 of them cost a few MiB and cover 16 GiB of 1 MiB records.
pub(crate) const CACHED_TABLES: usize = 16384;

/// (segment id, record data_pos, frame index).
type Key = (u64, u64, u32);

/// (segment id, record data_pos).
type TableKey = (u64, u64);

/// A group's LRU of decompressed frames and frame tables.
///
/// Segment ids may be reused once every segment of a group has been merged away, so the merger
/// calls [`FrameCache::forget_all`] when it deletes segments: that empties the cache and bumps
/// its generation. A read carries the generation its plan was made at (under the group lock) and
/// its frames are not cached if a merge ran since, so no frame of a deleted segment survives.
pub(crate) struct FrameCache {
    inner: Mutex<Inner>,
}

struct Inner {
    generation: u64,
    lru: LruCache<Key, Arc<[u8]>>,
    /// Checked, parsed frame tables.
    tables: LruCache<TableKey, Arc<[u32]>>,
}

impl FrameCache {
    pub(crate) fn new(frames: usize, tables: usize) -> FrameCache {
        FrameCache {
            inner: Mutex::new(Inner {
                generation: 0,
                lru: LruCache::new(frames.max(1)),
                tables: LruCache::new(tables.max(1)),
            }),
        }
    }

    /// The generation a read plan records.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().expect("frame cache lock").generation
    }

    /// Drops everything (segments were deleted).
    pub(crate) fn forget_all(&self) {
        let mut g = self.inner.lock().expect("frame cache lock");
        g.generation += 1;
        g.lru.clear();
        g.tables.clear();
    }

    fn get(&self, key: Key) -> Option<Arc<[u8]>> {
        self.inner
            .lock()
            .expect("frame cache lock")
            .lru
            .get(&key)
            .cloned()
    }

    fn put(&self, generation: u64, key: Key, value: Arc<[u8]>) {
        let mut g = self.inner.lock().expect("frame cache lock");
        if g.generation == generation {
            g.lru.insert(key, value);
        }
    }

    fn get_table(&self, key: TableKey) -> Option<Arc<[u32]>> {
        self.inner
            .lock()
            .expect("frame cache lock")
            .tables
            .get(&key)
            .cloned()
    }

    fn put_table(&self, generation: u64, key: TableKey, value: Arc<[u32]>) {
        let mut g = self.inner.lock().expect("frame cache lock");
        if g.generation == generation {
            g.tables.insert(key, value);
        }
    }

    /// Caches the frame tables of a chunk's encoded records as the writer publishes it (the
    /// chunk at `pos` of segment `segment_id`, its bytes in `chunk`): the writer has them in
    /// hand, and a table missing from the cache costs the first read of its record a second
    /// disk read. A table that does not parse is left for the read to find and report.
    pub(crate) fn remember_tables(&self, segment_id: u64, pos: u64, h: &ChunkHeader, chunk: &[u8]) {
        let mut encoded = h
            .records
            .iter()
            .filter(|r| r.encoding == Encoding::Zstd)
            .peekable();
        if encoded.peek().is_none() {
            return;
        }
        let mut g = self.inner.lock().expect("frame cache lock");
        for r in encoded {
            let region = usize::try_from(r.data_pos)
                .ok()
                .and_then(|at| chunk.get(at..));
            if let Some(Ok(t)) = region.map(|region| read_table(r.len, region)) {
                g.tables.insert((segment_id, pos + r.data_pos), t.into());
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn tables_len(&self) -> usize {
        self.inner.lock().expect("frame cache lock").tables.len()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().expect("frame cache lock").lru.len()
    }
}

/// Runs `f` with this thread's zstd decompressor (`rewind_formats::zstd_context`).
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> Result<T, DecodeError>,
) -> io::Result<T> {
    rewind_formats::zstd_context::with_decompressor(f)?.map_err(invalid)
}

fn invalid(e: DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Where an encoded record is: its segment's file and id, and the cache it reads through.
pub(crate) struct Record<'a> {
    pub(crate) file: &'a File,
    pub(crate) segment_id: u64,
    pub(crate) data_pos: u64,
    pub(crate) len: u32,
}

impl Record<'_> {
    /// Fills `out` with the record's plain bytes from `skip` on (`skip + out.len() <= len`).
    pub(crate) fn read_at(
        &self,
        out: &mut [u8],
        skip: u64,
        cache: &FrameCache,
        generation: u64,
    ) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let end = skip + out.len() as u64;
        if end > u64::from(self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "bytes {skip}..{end} of an encoded record of {} bytes",
                    self.len
                ),
            ));
        }
        let first = (skip / FRAME_SPAN as u64) as usize;
        let last = ((end - 1) / FRAME_SPAN as u64) as usize;
        let key = |i: usize| (self.segment_id, self.data_pos, i as u32);

        let mut frames: Vec<Option<Arc<[u8]>>> =
            (first..=last).map(|i| cache.get(key(i))).collect();
        if frames.iter().any(Option::is_none) {
            let table = self.table(cache, generation)?;
            // One read from the first missing frame to the last one.
            let lo = frames.iter().position(Option::is_none).expect("one is") + first;
            let hi = last
                - frames
                    .iter()
                    .rev()
                    .position(Option::is_none)
                    .expect("one is");
            let start = frame_offset(self.len, &table, lo);
            let stop = frame_offset(self.len, &table, hi) + table[hi] as usize;
            let mut buf = vec![0u8; stop - start];
            self.file
                .read_exact_at(&mut buf, self.data_pos + start as u64)?;
            for i in lo..=hi {
                if frames[i - first].is_some() {
                    continue;
                }
                let at = frame_offset(self.len, &table, i) - start;
                let (s, e) = frame_range(self.len, i);
                let mut plain = vec![0u8; e - s];
                with_decompressor(|d| {
                    decode_frame(d, &buf[at..at + table[i] as usize], &mut plain).map_err(|e| {
                        DecodeError::Decompress(format!(
                            "frame {i} of the record at {}: {e}",
                            self.data_pos
                        ))
                    })
                })?;
                let plain: Arc<[u8]> = plain.into();
                cache.put(generation, key(i), plain.clone());
                frames[i - first] = Some(plain);
            }
        }
        for (k, f) in frames.iter().enumerate() {
            let f = f.as_ref().expect("every frame read");
            let (s, e) = frame_range(self.len, first + k);
            let (lo, hi) = ((s as u64).max(skip), (e as u64).min(end));
            out[(lo - skip) as usize..(hi - skip) as usize]
                .copy_from_slice(&f[(lo - s as u64) as usize..(hi - s as u64) as usize]);
        }
        Ok(())
    }

    /// The record's frame table, through the cache (checked before it is cached).
    fn table(&self, cache: &FrameCache, generation: u64) -> io::Result<Arc<[u32]>> {
        let key = (self.segment_id, self.data_pos);
        if let Some(t) = cache.get_table(key) {
            return Ok(t);
        }
        let mut b = vec![0u8; table_len(self.len)];
        self.file.read_exact_at(&mut b, self.data_pos)?;
        let t: Arc<[u32]> = read_table(self.len, &b).map_err(invalid)?.into();
        cache.put_table(generation, key, t.clone());
        Ok(t)
    }
}

/// The whole encoded record of `len` plain bytes at `data_pos` of `file` into `out` (exactly
/// `len` bytes), for the merger. Bypasses the cache: each record is merged once.
pub(crate) fn read_whole(file: &File, data_pos: u64, len: u32, out: &mut [u8]) -> io::Result<()> {
    let mut t = vec![0u8; table_len(len)];
    file.read_exact_at(&mut t, data_pos)?;
    let table = read_table(len, &t).map_err(invalid)?;
    let mut region = vec![0u8; stored_len(len, &table)];
    file.read_exact_at(&mut region, data_pos)?;
    // The footer keeps no crc: the frames' own zstd checksums catch damage here.
    let crc = crc32c::crc32c(&region);
    with_decompressor(|d| decode_record(d, len, crc, &region, out))
}

#[cfg(test)]
mod tests;
