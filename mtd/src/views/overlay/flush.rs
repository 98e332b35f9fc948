//! Flushing an overlay: its data before the bitmap bits that point at it.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::{bitmap_len, Overlay, BITMAP_PAGE};
use crate::store::{Result, StoreError};

impl Overlay {
    /// Make every write so far durable: data first, then the bitmap pages that point at it.
    ///
    /// The bits written are a snapshot taken *before* the data is synced: a write that lands
    /// during the sync sets its bit after the snapshot, so its bit waits for the next flush
    /// (whose data sync covers it) instead of reaching the disk ahead of its data, where a power
    /// cut would leave a durable bit over a block that reads as zeros. Flushes run one at a
    /// time, so an older snapshot never overwrites a newer one and no flush returns while an
    /// earlier one still has bits to write.
    pub fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flushing.lock().expect("flush lock");
        let (pages, bytes) = {
            // `set` marks bits and dirty pages under this lock: the snapshot holds every bit
            // whose data was written before now, and only those.
            let mut dirty = self.dirty_pages.lock().expect("dirty lock");
            let pages: Vec<usize> = std::mem::take(&mut *dirty).into_iter().collect();
            (pages, self.bitmap_bytes())
        };
        if self.data_sync_failed.load(Ordering::Acquire) {
            return Err(self.sync_failed());
        }
        if let Err(e) = self.data.sync_data() {
            // The kernel may have dropped the unwritten pages: a later fsync could succeed
            // without them. Never report a flush of this data as done again.
            self.data_sync_failed.store(true, Ordering::Release);
            return Err(self.io_error("fsync", 0)(e));
        }
        if pages.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("bitmap");
        let written = pages.iter().try_for_each(|p| {
            let lo = p * BITMAP_PAGE;
            let hi = (lo + BITMAP_PAGE).min(bytes.len());
            self.bitmap_file.write_all_at(&bytes[lo..hi], lo as u64)
        });
        let result = written
            .and_then(|()| self.bitmap_file.sync_data())
            .map_err(StoreError::io("fsync", &path));
        if result.is_err() {
            // Not durable: the next flush writes these pages again (their bits' data is).
            self.dirty_pages
                .lock()
                .expect("dirty lock")
                .extend(pages.iter().copied());
        }
        result
    }

    fn sync_failed(&self) -> StoreError {
        self.io_error("fsync", 0)(std::io::Error::other(
            "an earlier fsync of this overlay's data failed; its writes since may be lost",
        ))
    }

    fn bitmap_bytes(&self) -> Vec<u8> {
        let n = bitmap_len(self.meta.size_bytes);
        let mut out = Vec::with_capacity(self.bits.len() * 8);
        for w in &self.bits {
            out.extend_from_slice(&w.load(Ordering::Acquire).to_le_bytes());
        }
        out.truncate(n);
        out
    }
}
