//! Archiving one kept point of one disk: while the point is still in the journal window, pin it
//! (a view does), cut the disk as of its seq into chunks, store the chunks the store lacks, and
//! write the manifest last; the pin goes when the view does, once the manifest is stored.
//!
//! Incremental when it can be: if the previous kept point of the disk is archived and the
//! journal still holds every record after it, only chunks those records touch are read; the
//! others take the previous manifest's hashes. Otherwise every chunk is read (zero ranges known
//! from the view's extent map are not).
//!
//! With Object Lock on, every object an archive writes is locked, and reused chunks whose lock
//! ends too early are extended before the manifest is written (see [`super::lock`]).

use std::collections::HashSet;
use std::sync::Arc;

use rewind_formats::ltr::{LtrManifest, LTR_CHUNK_SIZE, LTR_MANIFEST_VERSION};
use rewind_formats::Seq;
use rewind_linux::clock::now_ms;

use super::catalog::KeptPoint;
use super::chunk::{self, Hash};
use super::error::{LtrError, Result};
use super::lock::{slack_ms, Retain};
use super::objects::Pending;
use super::Ltr;
use crate::store::group::Group;
use crate::store::kept::PeriodPoint;
use crate::views::view::{Allocation, View};

/// Chunks handled per step: read, hashed and compressed on all cores, then stored while the
/// next step is read.
const BATCH: usize = 64;

/// What an archive did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ArchiveStats {
    pub chunks: u64,
    /// Chunks read from the journal and base (the rest were reused or known zero).
    pub read: u64,
    /// Chunks that took the previous manifest's hash unread.
    pub reused: u64,
    pub zero: u64,
    /// Chunks the store lacked, and their compressed bytes.
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    /// Object Lock on: objects written locked (the uploaded chunks and the manifest), and
    /// reused chunks whose lock was extended to cover this point.
    pub locked: u64,
    pub lock_extended: u64,
}

/// One chunk after reading: its hash (None for zeroes) and, if it must be uploaded, its
/// compressed bytes.
type Done = (Option<Hash>, Option<Vec<u8>>);

/// The previous kept point's hashes and the ranges written since it.
type Reuse = (Vec<Option<Hash>>, Vec<(u64, u64)>);

impl Ltr {
    /// Archive `point` of disk `ix` of `group`, kept until `keep_until_ms`. `progress` is told
    /// the percent done.
    pub fn archive(
        &self,
        group: &Arc<Group>,
        ix: usize,
        point: &PeriodPoint,
        keep_until_ms: u64,
        progress: &dyn Fn(f64),
    ) -> Result<ArchiveStats> {
        let _x = self.exclusive.lock().expect("ltr exclusive lock");
        // The view pins the seq: the merger cannot fold past it until the manifest is stored.
        let view = View::new(group.clone(), ix, point.seq)?;
        let (disk, size) = (view.disk_name().to_string(), view.size_bytes());
        let cs = u64::from(LTR_CHUNK_SIZE);
        let n = LtrManifest::chunk_count(size, LTR_CHUNK_SIZE) as usize;
        let prev = self.reusable(group, ix, &disk, point.seq, size)?;
        let mut hashes: Vec<Option<Hash>> = vec![None; n];
        let mut need = vec![true; n];
        let mut stats = ArchiveStats {
            chunks: n as u64,
            ..Default::default()
        };
        if let Some((prev_hashes, dirty)) = prev {
            need.fill(false);
            for (off, len) in dirty {
                let (a, b) = (off / cs, (off + len).div_ceil(cs).min(n as u64));
                for i in a..b {
                    need[i as usize] = true;
                }
            }
            for ((h, prev), need) in hashes.iter_mut().zip(prev_hashes).zip(&need) {
                if !need {
                    *h = prev;
                    stats.reused += 1;
                }
            }
        }
        // Object Lock: new chunks are locked past the point's expiry by the slack, so that the
        // next points reusing them seldom need to extend them.
        let chunk_retain = self.opts.object_lock.map(|mode| Retain {
            mode,
            until_ms: keep_until_ms + slack_ms(keep_until_ms, now_ms()),
        });
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        // Chunks this archive has put (or is putting): each is stored once.
        let mut queued: HashSet<Hash> = HashSet::new();
        let mut in_flight: Option<(Pending, Vec<Hash>)> = None;
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            let lo = start as u64 * cs;
            let hi = (end as u64 * cs).min(size);
            // Chunks wholly in zero runs (trimmed, zeroed, holes of the base) are not read.
            let mut zero = vec![false; end - start];
            for e in view.extents(lo, hi - lo)? {
                if e.allocation != Allocation::Zero {
                    continue;
                }
                let e_end = e.offset + e.len;
                for i in (e.offset / cs) as usize..(e_end.div_ceil(cs) as usize).min(end) {
                    let (c_lo, c_hi) = (i as u64 * cs, ((i as u64 + 1) * cs).min(size));
                    if i >= start && e.offset <= c_lo && c_hi <= e_end {
                        zero[i - start] = true;
                    }
                }
            }
            let todo: Vec<usize> = (start..end)
                .filter(|&i| need[i] && !zero[i - start])
                .collect();
            for i in (start..end).filter(|&i| need[i] && zero[i - start]) {
                hashes[i] = None;
                stats.zero += 1;
            }
            let done = self.read_chunks(&view, &todo, cs, size, threads)?;
            stats.read += todo.len() as u64;
            let mut puts = Vec::new();
            let mut fresh = Vec::new();
            for (&i, (h, stored)) in todo.iter().zip(done) {
                hashes[i] = h;
                if let (Some(h), Some(bytes)) = (h, stored) {
                    if queued.insert(h) {
                        stats.uploaded += 1;
                        stats.uploaded_bytes += bytes.len() as u64;
                        puts.push((chunk::key(&h), bytes));
                        fresh.push(h);
                    }
                }
            }
            // One batch is stored while the next is read and compressed. A chunk counts as
            // known only once its put succeeded: an archive that fails part way must not
            // leave the next one skipping a chunk that was never stored.
            if let Some((p, f)) = in_flight.take() {
                p.wait()?;
                self.stored(f, chunk_retain);
            }
            in_flight = Some((
                self.objects
                    .put_many_start(puts, self.opts.parallel, chunk_retain),
                fresh,
            ));
            progress(100.0 * end as f64 / n.max(1) as f64);
        }
        if let Some((p, f)) = in_flight.take() {
            p.wait()?;
            self.stored(f, chunk_retain);
        }
        // Every chunk the manifest names is locked at least until the point's expiry before
        // the manifest is written: one that cannot be extended fails the archive.
        stats.lock_extended = self.extend_locks(hashes.iter().flatten().copied(), keep_until_ms)?;
        let m = LtrManifest {
            version: LTR_MANIFEST_VERSION,
            group: group.name.clone(),
            disk: disk.clone(),
            seq: point.seq.0,
            time_ms: point.time_ms,
            disk_size: size,
            chunk_size: LTR_CHUNK_SIZE,
            keep_until_ms,
            app_consistent: point.app_consistent,
            tags: point.tags.clone(),
            chunks: hashes
                .iter()
                .map(|h| h.as_ref().map_or_else(String::new, chunk::to_hex))
                .collect(),
        };
        // Last: a manifest only ever names chunks that are stored, durably.
        self.objects.flush()?;
        self.objects.put(
            &LtrManifest::key(&group.name, &disk, point.seq.0),
            m.to_json(),
            self.manifest_retain(keep_until_ms),
        )?;
        self.objects.flush()?;
        if chunk_retain.is_some() {
            stats.locked = stats.uploaded + 1;
        }
        self.catalog
            .lock()
            .expect("catalog lock")
            .insert(KeptPoint::of(&m));
        drop(view);
        tracing::info!(group = %group.name, disk = %disk, seq = point.seq.0, ?stats, "archived a long-term point");
        Ok(stats)
    }

    /// Keep an archived point longer (it is also the kept point of a later period): its
    /// manifest is written again with the later expiry (after its chunks' locks, with Object
    /// Lock on, are extended to cover it). The number of chunks whose lock was extended.
    pub fn extend(&self, p: &KeptPoint, keep_until_ms: u64) -> Result<u64> {
        let _x = self.exclusive.lock().expect("ltr exclusive lock");
        let mut m = self.manifest(&p.group, &p.disk, p.seq)?;
        if m.keep_until_ms >= keep_until_ms {
            return Ok(0);
        }
        let extended = self.extend_locks(
            m.chunks.iter().filter_map(|c| chunk::from_hex(c)),
            keep_until_ms,
        )?;
        m.keep_until_ms = keep_until_ms;
        self.objects
            .put(&p.key(), m.to_json(), self.manifest_retain(keep_until_ms))?;
        self.objects.flush()?;
        self.catalog
            .lock()
            .expect("catalog lock")
            .insert(KeptPoint::of(&m));
        Ok(extended)
    }

    /// Chunks whose put succeeded: known from now on (an archive that fails part way must not
    /// leave the next one skipping a chunk never stored), and locked until `retain`'s date.
    fn stored(&self, fresh: Vec<Hash>, retain: Option<Retain>) {
        if let Some(r) = retain {
            let mut ends = self.lock_ends.lock().expect("lock ends lock");
            for h in &fresh {
                ends.raise(*h, r.until_ms);
            }
        }
        self.known.lock().expect("known lock").extend(fresh);
    }

    /// How a manifest kept until `keep_until_ms` is locked (None: Object Lock off).
    fn manifest_retain(&self, keep_until_ms: u64) -> Option<Retain> {
        self.opts.object_lock.map(|mode| Retain {
            mode,
            until_ms: keep_until_ms,
        })
    }

    /// Object Lock on: extend the lock of each of `names` known to end before `keep_until_ms`
    /// to that plus the slack, `--ltr-parallel` at a time. How many were extended.
    fn extend_locks(
        &self,
        names: impl IntoIterator<Item = Hash>,
        keep_until_ms: u64,
    ) -> Result<u64> {
        let Some(mode) = self.opts.object_lock else {
            return Ok(0);
        };
        let short = self
            .lock_ends
            .lock()
            .expect("lock ends lock")
            .short_of(names, keep_until_ms);
        if short.is_empty() {
            return Ok(0);
        }
        let retain = Retain {
            mode,
            until_ms: keep_until_ms + slack_ms(keep_until_ms, now_ms()),
        };
        let keys = short.iter().map(chunk::key).collect();
        let until = self.objects.retain_many(keys, self.opts.parallel, retain)?;
        let mut ends = self.lock_ends.lock().expect("lock ends lock");
        for (h, t) in short.iter().zip(until) {
            ends.raise(*h, t);
        }
        tracing::info!(chunks = short.len(), until = %retain.date(), "extended the lock of reused long-term chunks");
        Ok(short.len() as u64)
    }

    /// The previous kept point's hashes and the ranges written since it, when an incremental
    /// archive is possible.
    fn reusable(
        &self,
        group: &Group,
        ix: usize,
        disk: &str,
        seq: Seq,
        size: u64,
    ) -> Result<Option<Reuse>> {
        let prev = self
            .catalog
            .lock()
            .expect("catalog lock")
            .before(&group.name, disk, seq.0)
            .cloned();
        let Some(prev) = prev.filter(|p| p.disk_size == size && p.chunk_size == LTR_CHUNK_SIZE)
        else {
            return Ok(None);
        };
        let Some(dirty) = group.written_between(ix, Seq(prev.seq), seq) else {
            return Ok(None);
        };
        let m = self.manifest(&group.name, disk, prev.seq)?;
        let hashes = m
            .chunks
            .iter()
            .map(|c| {
                if c.is_empty() {
                    Ok(None)
                } else {
                    chunk::from_hex(c)
                        .map(Some)
                        .ok_or_else(|| LtrError::Corrupt {
                            key: prev.key(),
                            why: format!("chunk entry {c:?} is not a hash"),
                        })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((hashes, dirty)))
    }

    /// Read, hash and (when the store lacks them) compress the chunks `todo`, on `threads`.
    fn read_chunks(
        &self,
        view: &View,
        todo: &[usize],
        cs: u64,
        size: u64,
        threads: usize,
    ) -> Result<Vec<Done>> {
        let per = todo.len().div_ceil(threads.max(1)).max(1);
        let known = &self.known;
        std::thread::scope(|s| {
            let handles: Vec<_> = todo
                .chunks(per)
                .map(|part| {
                    s.spawn(move || -> Result<Vec<Done>> {
                        let mut out = Vec::with_capacity(part.len());
                        let mut buf = vec![0u8; cs as usize];
                        for &i in part {
                            let off = i as u64 * cs;
                            let len = (size - off).min(cs) as usize;
                            view.read_at(&mut buf[..len], off)?;
                            let plain = &buf[..len];
                            if chunk::is_zero(plain) {
                                out.push((None, None));
                                continue;
                            }
                            let h = chunk::hash(plain);
                            let stored = (!known.lock().expect("known lock").contains(&h))
                                .then(|| chunk::compress(plain));
                            out.push((Some(h), stored));
                        }
                        Ok(out)
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(todo.len());
            for h in handles {
                all.extend(h.join().expect("chunk worker")?);
            }
            Ok(all)
        })
    }
}
