//! The persisted dirty-region map: which regions of the protected disks may differ from the
//! target. It is what makes an agent crash, a host reboot or a spool overflow cost a partial
//! resync instead of a full one.
//!
//! A region's bit is set, and made durable, before a write to it reaches the backing disk (so
//! before the workload sees the write acknowledged), and cleared only once the target has
//! acknowledged every record that touched the region. Like md's write-intent bitmap, bits are
//! set eagerly (a 0→1 change costs one fdatasync, shared by every writer waiting at the time:
//! group commit) and cleared lazily (a pass every second clears regions acknowledged a few
//! seconds ago), so a region written again and again costs nothing after its first write.
//!
//! A region is *pinned* when its contents must be compared with the target before its bit can
//! clear: every set bit found at start, and every write that could not be queued (the spool
//! was full: bitmap mode). The resync ([`crate::sync::pass`]) unpins a region once it has queued
//! whatever differed.
//!
//! File (`STATE_DIR/GROUP.dirty`): a header (magic, region size, the disks' sizes, crc32c),
//! then one bit per region, disk after disk. A header that does not match the disks (resized,
//! added, corrupt) marks every region dirty: a full compare, never a missed change.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::stream::seq::LocalSeq;
use crate::sync::rangelock::CHUNK;

/// Bytes per region: the range lock's chunk, so a resync of a region takes one lock.
pub const REGION: u64 = CHUNK;

#[derive(Clone, Copy, Default)]
struct Region {
    /// Writes marked but not yet recorded (or dropped).
    pending: u32,
    /// Must be compared with the target before it can be clean.
    pinned: bool,
    /// Bumped at every pin: a resync unpins only the pin it saw.
    pin_gen: u32,
    /// Pinned only to be resent whole (see [`DirtyMap::pin_dirty_for_resend`]), not compared.
    resend: bool,
    /// The last local seq recorded for this region: clean once the target acknowledged it.
    last_seq: LocalSeq,
    /// The `written_gen` that wrote this region's bit as set: the bit is durable once `durable`
    /// reaches it. A writer that finds the bit set already still waits for that.
    set_gen: u64,
}

struct State {
    /// The file's bitmap, as it should be on disk.
    bits: Vec<u8>,
    /// Per disk: its first byte in `bits`, and its regions.
    disks: Vec<(usize, Vec<Region>)>,
    /// Bumped at every write of newly set bits; `durable` tells how far fdatasync got.
    written_gen: u64,
    /// Regions pinned (kept as a count: the sync thread polls it).
    pinned: u64,
}

impl State {
    fn bit(&self, disk: usize, r: usize) -> bool {
        let i = self.disks[disk].0 + r / 8;
        self.bits[i] & (1 << (r % 8)) != 0
    }

    /// Pins region `r` of `disk` (again: a new pin generation).
    fn pin(&mut self, disk: usize, r: usize) {
        let reg = &mut self.disks[disk].1[r];
        if !reg.pinned {
            self.pinned += 1;
        }
        reg.pinned = true;
        reg.resend = false;
        reg.pin_gen = reg.pin_gen.wrapping_add(1);
    }

    fn set_bit(&mut self, disk: usize, r: usize, on: bool) {
        let i = self.disks[disk].0 + r / 8;
        if on {
            self.bits[i] |= 1 << (r % 8);
        } else {
            self.bits[i] &= !(1 << (r % 8));
        }
    }
}

pub struct DirtyMap {
    path: PathBuf,
    file: File,
    header_len: u64,
    state: Mutex<State>,
    /// Held while syncing: one fdatasync at a time, covering every write before it.
    syncing: Mutex<()>,
    /// The last `written_gen` made durable.
    durable: AtomicU64,
}

/// A pinned region, as the resync sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub disk: u16,
    pub region: u64,
    /// Resend it whole: the target lacks records of it, nothing else (no compare needed).
    pub resend: bool,
    gen: u32,
}

/// Counts for the status file.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirtyStats {
    pub dirty: u64,
    pub pinned: u64,
}

/// A write's mark on its regions: say how it ended with [`Marked::recorded`]; dropped without
/// that (the write failed midway), its regions are pinned, as the disk may have changed.
pub struct Marked {
    map: Arc<DirtyMap>,
    disk: usize,
    first: usize,
    last: usize,
    done: bool,
}

/// The map's header (layout in formats: `dirty_map`, FORMATS.md "State files").
fn header(sizes: &[u64]) -> Vec<u8> {
    rewind_formats::dirty_map::encode_header(REGION as u32, sizes)
}

fn regions_of(size: u64) -> usize {
    size.div_ceil(REGION) as usize
}

impl DirtyMap {
    /// Opens (or creates) the map for disks of `sizes`. Returns it and whether a valid map was
    /// found; every region set in it is pinned. With none (a new state dir, or one for other
    /// disks), every region is dirty and pinned.
    pub fn open(path: &Path, sizes: &[u64]) -> Result<(Arc<DirtyMap>, bool)> {
        let head = header(sizes);
        let mut disks = Vec::with_capacity(sizes.len());
        let mut nbytes = 0;
        for &s in sizes {
            let n = regions_of(s);
            disks.push((nbytes, vec![Region::default(); n]));
            nbytes += n.div_ceil(8);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::path("opening the dirty-region map", path))?;
        let mut found = vec![0u8; head.len() + nbytes];
        let len = file
            .metadata()
            .map_err(Error::path("reading the dirty-region map", path))?
            .len();
        let valid = len == found.len() as u64
            && file.read_exact_at(&mut found, 0).is_ok()
            && found[..head.len()] == head[..];
        if len > 0 && !valid {
            tracing::warn!(path = %path.display(), "the dirty-region map is for other disks or \
                damaged: every region will be compared with the target");
        }
        let mut state = State {
            bits: if valid {
                found[head.len()..].to_vec()
            } else {
                vec![0u8; nbytes]
            },
            disks,
            written_gen: 0,
            pinned: 0,
        };
        for d in 0..state.disks.len() {
            for r in 0..state.disks[d].1.len() {
                if !valid {
                    state.set_bit(d, r, true);
                }
                if state.bit(d, r) {
                    state.pin(d, r);
                }
            }
        }
        let map = DirtyMap {
            path: path.to_path_buf(),
            file,
            header_len: head.len() as u64,
            state: Mutex::new(state),
            syncing: Mutex::new(()),
            durable: AtomicU64::new(0),
        };
        if !valid {
            map.file
                .set_len(0)
                .and_then(|()| map.file.write_all_at(&head, 0))
                .map_err(Error::path("writing the dirty-region map", path))?;
            let st = map.lock();
            map.write_bits(&st)?;
            drop(st);
            map.file
                .sync_all()
                .map_err(Error::path("syncing the dirty-region map", path))?;
        }
        Ok((Arc::new(map), valid))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_bits(&self, st: &State) -> Result<()> {
        self.file
            .write_all_at(&st.bits, self.header_len)
            .map_err(Error::path("writing the dirty-region map", &self.path))
    }

    /// Waits until every bit written up to `gen` is durable.
    fn sync_to(&self, gen: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= gen {
            return Ok(());
        }
        let _one = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        if self.durable.load(Ordering::Acquire) >= gen {
            return Ok(());
        }
        let target = self.lock().written_gen;
        // A failed fdatasync leaves `durable` where it was: every later mark of these regions
        // tries again rather than trusting bits that may not be on disk.
        self.file
            .sync_data()
            .map_err(Error::path("syncing the dirty-region map", &self.path))?;
        self.durable.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Marks the regions of `[offset, offset + len)` of `disk` dirty, durably, before a write
    /// to them: it returns once every one of their bits is on disk (set by this call or by an
    /// earlier one whose fdatasync may still be running).
    pub fn mark(self: &Arc<Self>, disk: usize, offset: u64, len: u64) -> Result<Marked> {
        let first = (offset / REGION) as usize;
        let last = ((offset + len.max(1) - 1) / REGION) as usize;
        let mut st = self.lock();
        let newly: Vec<usize> = (first..=last).filter(|&r| !st.bit(disk, r)).collect();
        if !newly.is_empty() {
            for &r in &newly {
                st.set_bit(disk, r, true);
            }
            if let Err(e) = self.write_bits_range(&st, disk, first, last) {
                for &r in &newly {
                    st.set_bit(disk, r, false);
                }
                return Err(e);
            }
            st.written_gen += 1;
            let gen = st.written_gen;
            for &r in &newly {
                st.disks[disk].1[r].set_gen = gen;
            }
        }
        let mut need = 0;
        for r in first..=last {
            let reg = &mut st.disks[disk].1[r];
            reg.pending += 1;
            need = need.max(reg.set_gen);
        }
        drop(st);
        // From here the mark counts: an error below drops it, which pins its regions.
        let marked = Marked {
            map: Arc::clone(self),
            disk,
            first,
            last,
            done: false,
        };
        self.sync_to(need)?;
        Ok(marked)
    }

    fn write_bits_range(&self, st: &State, disk: usize, first: usize, last: usize) -> Result<()> {
        let a = st.disks[disk].0 + first / 8;
        let b = st.disks[disk].0 + last / 8;
        self.file
            .write_all_at(&st.bits[a..=b], self.header_len + a as u64)
            .map_err(Error::path("writing the dirty-region map", &self.path))
    }

    /// Every region dirty and pinned (the target's copy is unknown).
    pub fn pin_all(&self) -> Result<()> {
        let mut st = self.lock();
        for d in 0..st.disks.len() {
            for r in 0..st.disks[d].1.len() {
                st.set_bit(d, r, true);
                st.pin(d, r);
            }
        }
        self.write_bits(&st)?;
        st.written_gen += 1;
        let gen = st.written_gen;
        for d in 0..st.disks.len() {
            for reg in st.disks[d].1.iter_mut() {
                reg.set_gen = gen;
            }
        }
        drop(st);
        self.sync_to(gen)
    }

    /// Pins every dirty region to be resent whole, without a compare; returns how many are
    /// pinned. For a path that lost records it acknowledged (a relay that never forwarded
    /// them) while the target kept everything it held: every record it lacks touched a region
    /// whose bit is still set, as bits clear only once the master target holds their records.
    /// A region already pinned for a compare stays so. No I/O: the bits are durable already.
    pub fn pin_dirty_for_resend(&self) -> u64 {
        let mut st = self.lock();
        let mut n = 0;
        for d in 0..st.disks.len() {
            for r in 0..st.disks[d].1.len() {
                if !st.bit(d, r) {
                    continue;
                }
                let compare = {
                    let reg = &st.disks[d].1[r];
                    reg.pinned && !reg.resend
                };
                st.pin(d, r);
                st.disks[d].1[r].resend = !compare;
                n += 1;
            }
        }
        n
    }

    /// Whether region `region` of `disk` may hold a write the target's state at local seq
    /// `seq` lacks: a write recorded after `seq`, one not yet recorded, or a pin (a write that
    /// could not be queued, or a compare owed). The online verify compares only regions for
    /// which this is false (see [`crate::sync::verify`]).
    pub fn written_since(&self, disk: u16, region: u64, seq: LocalSeq) -> bool {
        let st = self.lock();
        let reg = &st.disks[disk as usize].1[region as usize];
        reg.pinned || reg.pending > 0 || reg.last_seq > seq
    }

    /// Marks region `region` of `disk` dirty and pinned, durably: the resync compares it with
    /// the target and sends what differs (the online verify's repair).
    pub fn pin_region(&self, disk: u16, region: u64) -> Result<()> {
        let (d, r) = (disk as usize, region as usize);
        let mut st = self.lock();
        st.set_bit(d, r, true);
        st.pin(d, r);
        self.write_bits_range(&st, d, r, r)?;
        st.written_gen += 1;
        let gen = st.written_gen;
        st.disks[d].1[r].set_gen = gen;
        drop(st);
        self.sync_to(gen)
    }

    /// The pinned regions, disk by disk, in order.
    pub fn pinned(&self) -> Vec<Pinned> {
        let st = self.lock();
        let mut out = Vec::new();
        for (d, (_, regions)) in st.disks.iter().enumerate() {
            for (r, reg) in regions.iter().enumerate() {
                if reg.pinned {
                    out.push(Pinned {
                        disk: d as u16,
                        region: r as u64,
                        resend: reg.resend,
                        gen: reg.pin_gen,
                    });
                }
            }
        }
        out
    }

    /// The resync queued what differed in `p` (its last record, or the last seq at the time
    /// when nothing differed, is `seq`): clean once `seq` is acknowledged, unless pinned again
    /// meanwhile.
    pub fn unpin(&self, p: Pinned, seq: LocalSeq) {
        let mut st = self.lock();
        let reg = &mut st.disks[p.disk as usize].1[p.region as usize];
        if reg.pinned && reg.pin_gen == p.gen {
            reg.pinned = false;
            reg.resend = false;
            reg.last_seq = reg.last_seq.max(seq);
            st.pinned -= 1;
        }
    }

    /// Clears the regions whose every record is acknowledged (local seq `acked`); returns how
    /// many were cleared.
    pub fn clear_acked(&self, acked: LocalSeq) -> Result<usize> {
        let mut st = self.lock();
        let mut cleared = 0;
        // Writers wait for this lock: look only at the set bits (a byte at a time), not at
        // every region of every disk.
        for d in 0..st.disks.len() {
            let (first, n) = (st.disks[d].0, st.disks[d].1.len());
            for byte in 0..n.div_ceil(8) {
                if st.bits[first + byte] == 0 {
                    continue;
                }
                for r in byte * 8..(byte * 8 + 8).min(n) {
                    let reg = st.disks[d].1[r];
                    if st.bit(d, r) && !reg.pinned && reg.pending == 0 && reg.last_seq <= acked {
                        st.set_bit(d, r, false);
                        cleared += 1;
                    }
                }
            }
        }
        if cleared > 0 {
            // Not synced: a clear that is lost in a crash costs a compare of that region.
            self.write_bits(&st)?;
        }
        Ok(cleared)
    }

    pub fn stats(&self) -> DirtyStats {
        let st = self.lock();
        let dirty = st.bits.iter().map(|b| u64::from(b.count_ones())).sum();
        DirtyStats {
            dirty,
            pinned: st.pinned,
        }
    }

    /// Pinned regions per disk (a walk over every region: for scrapes, not hot paths).
    pub fn pinned_per_disk(&self) -> Vec<u64> {
        let st = self.lock();
        st.disks
            .iter()
            .map(|(_, regions)| regions.iter().filter(|r| r.pinned).count() as u64)
            .collect()
    }

    /// How many regions wait for a compare (cheap: a counter).
    pub fn pinned_count(&self) -> u64 {
        self.lock().pinned
    }

    /// Makes every bit written so far durable (at shutdown).
    pub fn sync(&self) -> Result<()> {
        let mut st = self.lock();
        st.written_gen += 1;
        let gen = st.written_gen;
        drop(st);
        self.sync_to(gen)
    }
}

impl Marked {
    /// The write was recorded with local seq `seq`, or (`None`) dropped from the stream: then
    /// its regions are pinned for the resync.
    pub fn recorded(mut self, seq: Option<LocalSeq>) {
        self.finish(seq);
    }

    fn finish(&mut self, seq: Option<LocalSeq>) {
        self.done = true;
        let mut st = self.map.lock();
        for r in self.first..=self.last {
            st.disks[self.disk].1[r].pending -= 1;
            match seq {
                Some(s) => {
                    let reg = &mut st.disks[self.disk].1[r];
                    reg.last_seq = reg.last_seq.max(s);
                }
                None => st.pin(self.disk, r),
            }
        }
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        if !self.done {
            self.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_persist_and_clear_only_once_acked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.dirty");
        let sizes = [10 * REGION, 3 * REGION + 512];
        let (m, valid) = DirtyMap::open(&p, &sizes).unwrap();
        assert!(!valid, "a new map");
        assert_eq!(m.stats().pinned, 14, "no map: everything is compared");
        for p in m.pinned() {
            m.unpin(p, LocalSeq(0));
        }
        assert_eq!(m.clear_acked(LocalSeq(0)).unwrap(), 14);
        assert_eq!(m.stats().dirty, 0);

        let w = m.mark(0, 2 * REGION - 4096, 8192).unwrap(); // regions 1 and 2
        assert_eq!(m.stats().dirty, 2);
        assert_eq!(
            m.clear_acked(LocalSeq(100)).unwrap(),
            0,
            "pending writes stay dirty"
        );
        w.recorded(Some(LocalSeq(7)));
        assert_eq!(
            m.clear_acked(LocalSeq(6)).unwrap(),
            0,
            "seq 7 not acked yet"
        );
        let dropped = m.mark(1, 3 * REGION, 512).unwrap();
        dropped.recorded(None);
        drop(m);

        // A crash: the marks are on disk, and every dirty region is pinned.
        let (m, valid) = DirtyMap::open(&p, &sizes).unwrap();
        assert!(valid);
        let pinned: Vec<(u16, u64)> = m.pinned().iter().map(|p| (p.disk, p.region)).collect();
        assert_eq!(pinned, vec![(0, 1), (0, 2), (1, 3)]);
        let first = m.pinned()[0];
        // Pinned again after the resync looked at it (a write that failed midway).
        drop(m.mark(0, REGION, 1).unwrap());
        m.unpin(first, LocalSeq(3));
        assert_eq!(m.stats().pinned, 3, "a stale unpin does not count");
        for p in m.pinned() {
            m.unpin(p, LocalSeq(3));
        }
        assert_eq!(m.clear_acked(LocalSeq(3)).unwrap(), 3);
        drop(m);

        // Other disks: everything is dirty again.
        let (m, valid) = DirtyMap::open(&p, &[10 * REGION]).unwrap();
        assert!(!valid);
        assert_eq!(m.stats().pinned, 10);
    }

    #[test]
    fn a_lost_relay_stretch_pins_the_dirty_regions_for_a_resend_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.dirty");
        let (m, _) = DirtyMap::open(&p, &[8 * REGION]).unwrap();
        for p in m.pinned() {
            m.unpin(p, LocalSeq(0));
        }
        m.clear_acked(LocalSeq(0)).unwrap();
        // Regions 2 and 5 hold records a relay acknowledged; 6 waits for a compare already.
        m.mark(0, 2 * REGION, 4096)
            .unwrap()
            .recorded(Some(LocalSeq(4)));
        m.mark(0, 5 * REGION, 4096)
            .unwrap()
            .recorded(Some(LocalSeq(5)));
        m.pin_region(0, 6).unwrap();
        assert_eq!(m.pin_dirty_for_resend(), 3);
        let pinned: Vec<(u64, bool)> = m.pinned().iter().map(|p| (p.region, p.resend)).collect();
        assert_eq!(
            pinned,
            vec![(2, true), (5, true), (6, false)],
            "only the dirty regions, and a compare owed stays a compare"
        );
        // A pin for a compare (bitmap mode, a write that failed) overrides the resend.
        m.pin_region(0, 2).unwrap();
        assert!(!m.pinned()[0].resend);
        // Unpinned by the resend, a region is clean once its copy is acknowledged.
        for p in m.pinned() {
            m.unpin(p, LocalSeq(9));
        }
        assert_eq!(m.clear_acked(LocalSeq(8)).unwrap(), 0);
        assert_eq!(m.clear_acked(LocalSeq(9)).unwrap(), 3);
    }
}
