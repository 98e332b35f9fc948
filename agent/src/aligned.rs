//! Page-aligned buffers for O_DIRECT IO, and a pool that keeps freed ones for reuse.
//!
//! The capture path copies each write into one of these before the pwrite (O_DIRECT needs the
//! memory aligned); the same buffer then becomes the record's data, so a write is copied once.
//! Buffers come in power-of-two size classes from 4 KiB to 1 MiB (the largest FUSE write), so a
//! pool of a few per class serves a steady workload without touching the allocator.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// Alignment of every buffer: enough for O_DIRECT on 4 KiB-sector devices.
pub const ALIGN: usize = 4096;
const MIN_CLASS: usize = 12; // 4 KiB
const MAX_CLASS: usize = 20; // 1 MiB
/// Freed buffers kept per size class.
const KEEP_PER_CLASS: usize = 64;

/// An owned, zero-initialised, [`ALIGN`]-aligned byte buffer of `len` bytes (capacity rounded
/// up to its size class).
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    pool: Option<Arc<Pool>>,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like a Vec<u8>); nothing else aliases it.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads of the owned bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn alloc(cap: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(cap, ALIGN).expect("buffer layout");
        // SAFETY: layout has a non-zero size (cap >= ALIGN).
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            cap,
            len: cap,
            pool: None,
        }
    }

    /// A buffer not tied to a pool, `len` bytes long.
    pub fn new(len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::alloc(len.max(1).next_multiple_of(ALIGN));
        b.len = len;
        b
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the visible length (the capacity stays).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to cap >= len initialised (zeroed at allocation) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if let Some(class) = class_of(self.cap) {
                let mut free = pool.free[class - MIN_CLASS]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if free.len() < KEEP_PER_CLASS {
                    free.push(AlignedBuf {
                        ptr: self.ptr,
                        cap: self.cap,
                        len: self.cap,
                        pool: None,
                    });
                    return;
                }
            }
        }
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("buffer layout");
        // SAFETY: ptr was allocated by alloc_zeroed with exactly this layout and is freed once
        // (a buffer handed back to the pool returned above without freeing).
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

fn class_of(cap: usize) -> Option<usize> {
    let c = cap.trailing_zeros() as usize;
    (cap.is_power_of_two() && (MIN_CLASS..=MAX_CLASS).contains(&c)).then_some(c)
}

/// Freed buffers by size class.
pub struct Pool {
    free: Vec<Mutex<Vec<AlignedBuf>>>,
}

impl Pool {
    pub fn new() -> Arc<Pool> {
        Arc::new(Pool {
            free: (MIN_CLASS..=MAX_CLASS)
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        })
    }

    /// A buffer of `len` bytes that returns to this pool when dropped. Its contents are
    /// whatever the last user left: callers overwrite the `len` bytes they use.
    pub fn get(self: &Arc<Pool>, len: usize) -> AlignedBuf {
        let cap = len.max(1).next_power_of_two().max(1 << MIN_CLASS);
        let mut b = match class_of(cap) {
            Some(class) => {
                let reused = self.free[class - MIN_CLASS]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                let mut b = reused.unwrap_or_else(|| AlignedBuf::alloc(cap));
                b.pool = Some(Arc::clone(self));
                b
            }
            None => AlignedBuf::alloc(len.next_multiple_of(ALIGN)),
        };
        b.len = len;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_reused() {
        let pool = Pool::new();
        let mut a = pool.get(5000);
        assert_eq!(a.len(), 5000);
        assert_eq!(a.as_ptr() as usize % ALIGN, 0);
        a[4999] = 7;
        let p = a.as_ptr();
        drop(a);
        let b = pool.get(8192);
        assert_eq!(b.as_ptr(), p, "freed buffer of the same class is reused");
        let big = pool.get(3 << 20);
        assert_eq!(big.len(), 3 << 20);
        assert_eq!(big.as_ptr() as usize % ALIGN, 0);
        let plain = AlignedBuf::new(10);
        assert_eq!(plain.len(), 10);
    }
}
