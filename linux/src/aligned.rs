//! Page-aligned buffers for O_DIRECT IO, and pools that keep freed ones for reuse.
//!
//! O_DIRECT needs the memory aligned, so the agent's capture path, the target's journal writer
//! and its NBD server all read and write through [`AlignedBuf`]. A fresh zeroed allocation per
//! request costs a zeroing pass (or page faults on first touch) comparable to the IO itself, so
//! buffers come from a [`Pool`]: power-of-two size classes, a freed buffer goes back to its class,
//! and [`Limits`] bound what a pool keeps idle (per class, per pool, and across pools sharing a
//! [`Budget`]).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Alignment of every buffer: enough for O_DIRECT on 4 KiB-sector devices (and the journal's
/// block size).
pub const ALIGN: usize = 4096;

/// An owned, zero-initialised (when freshly allocated), [`ALIGN`]-aligned byte buffer of `len`
/// bytes; its capacity is rounded up to [`ALIGN`], or to its size class when pooled.
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
        // SAFETY: layout has a non-zero size (every caller passes cap >= ALIGN).
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            cap,
            len: cap,
            pool: None,
        }
    }

    /// A zeroed buffer of `len` bytes, not tied to a pool.
    pub fn new(len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::alloc(len.max(1).next_multiple_of(ALIGN));
        b.len = len;
        b
    }

    /// A buffer holding a copy of `bytes`, not tied to a pool.
    pub fn copy_from(bytes: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::new(bytes.len());
        b.copy_from_slice(bytes);
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
            if pool.keep(self.ptr, self.cap) {
                return;
            }
        }
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("buffer layout");
        // SAFETY: ptr was allocated by alloc_zeroed with exactly this layout and is freed once
        // (a buffer the pool kept returned above without freeing; the pool's copy has no pool,
        // so it is freed here when the pool itself drops it).
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// A cap on the idle bytes of every pool that shares it (for pools made per connection, so that
/// many idle connections hold little).
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    fn take(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// What a [`Pool`] recycles and how much it keeps idle.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Smallest size class, as log2 of its bytes: smaller requests get a buffer of this class.
    pub min_shift: u32,
    /// Largest pooled class; larger buffers are allocated and freed each time.
    pub max_shift: u32,
    /// Idle buffers kept per class.
    pub keep_per_class: usize,
    /// Idle bytes kept by this pool.
    pub keep_bytes: usize,
    /// Idle bytes kept by all pools sharing this budget.
    pub shared: Option<&'static Budget>,
}

/// The agent's capture buffers: 4 KiB to 1 MiB (the largest FUSE write), 64 per class, so a
/// steady workload does not touch the allocator.
pub const DEFAULT_LIMITS: Limits = Limits {
    min_shift: 12,
    max_shift: 20,
    keep_per_class: 64,
    keep_bytes: usize::MAX,
    shared: None,
};

/// Freed buffers by size class.
pub struct Pool {
    limits: Limits,
    free: Mutex<Free>,
}

struct Free {
    classes: Vec<Vec<AlignedBuf>>,
    bytes: usize,
}

impl Pool {
    /// A pool with [`DEFAULT_LIMITS`].
    pub fn new() -> Arc<Pool> {
        Pool::with_limits(DEFAULT_LIMITS)
    }

    pub fn with_limits(limits: Limits) -> Arc<Pool> {
        let classes = (limits.min_shift..=limits.max_shift)
            .map(|_| Vec::new())
            .collect();
        Arc::new(Pool {
            limits,
            free: Mutex::new(Free { classes, bytes: 0 }),
        })
    }

    /// The class index of a capacity, if this pool recycles buffers of that size.
    fn class_of(&self, cap: usize) -> Option<usize> {
        let shift = cap.trailing_zeros();
        (cap.is_power_of_two() && (self.limits.min_shift..=self.limits.max_shift).contains(&shift))
            .then(|| (shift - self.limits.min_shift) as usize)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of `len` bytes that returns to this pool when dropped. Its contents are
    /// whatever the last user left: callers overwrite the `len` bytes they use.
    pub fn get(self: &Arc<Pool>, len: usize) -> AlignedBuf {
        let cap = len
            .max(1)
            .next_power_of_two()
            .max(1 << self.limits.min_shift);
        let mut b = match self.class_of(cap) {
            Some(class) => {
                let reused = {
                    let mut free = self.lock();
                    let b = free.classes[class].pop();
                    if b.is_some() {
                        free.bytes -= cap;
                        if let Some(shared) = self.limits.shared {
                            shared.give_back(cap);
                        }
                    }
                    b
                };
                let mut b = reused.unwrap_or_else(|| AlignedBuf::alloc(cap));
                b.pool = Some(Arc::clone(self));
                b
            }
            None => AlignedBuf::alloc(len.max(1).next_multiple_of(ALIGN)),
        };
        b.len = len;
        b
    }

    /// Keep a dropped buffer's allocation if the limits allow; false: the caller frees it.
    fn keep(&self, ptr: NonNull<u8>, cap: usize) -> bool {
        let Some(class) = self.class_of(cap) else {
            return false;
        };
        let mut free = self.lock();
        if free.classes[class].len() >= self.limits.keep_per_class
            || free.bytes + cap > self.limits.keep_bytes
        {
            return false;
        }
        if let Some(shared) = self.limits.shared {
            if !shared.take(cap) {
                return false;
            }
        }
        free.bytes += cap;
        free.classes[class].push(AlignedBuf {
            ptr,
            cap,
            len: cap,
            pool: None,
        });
        true
    }

    /// Bytes held idle in this pool.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(shared) = self.limits.shared {
            shared.give_back(self.lock().bytes);
        }
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
        assert_eq!(pool.cached_bytes(), 8192);
        let b = pool.get(8192);
        assert_eq!(b.as_ptr(), p, "freed buffer of the same class is reused");
        assert_eq!(pool.cached_bytes(), 0);
        let big = pool.get(3 << 20);
        assert_eq!(big.len(), 3 << 20);
        assert_eq!(big.as_ptr() as usize % ALIGN, 0);
        let plain = AlignedBuf::new(10);
        assert_eq!(plain.len(), 10);
        let empty = pool.get(0);
        assert!(empty.is_empty());
    }

    #[test]
    fn fresh_buffers_are_zeroed() {
        let b = AlignedBuf::new(5000);
        assert!(b.iter().all(|&x| x == 0));
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        let c = AlignedBuf::copy_from(&[7; 100]);
        assert_eq!(&c[..], &[7; 100]);
    }

    #[test]
    fn idle_bytes_are_bounded() {
        static SHARED: Budget = Budget::new(48 << 20);
        let limits = Limits {
            min_shift: 12,
            max_shift: 25,
            keep_per_class: usize::MAX,
            keep_bytes: 16 << 20,
            shared: Some(&SHARED),
        };
        let pool = Pool::with_limits(limits);
        let bufs: Vec<AlignedBuf> = (0..3).map(|_| pool.get(16 << 20)).collect();
        drop(bufs);
        assert_eq!(pool.cached_bytes(), 16 << 20, "one kept, two freed");
        let other = Pool::with_limits(limits);
        drop((0..3).map(|_| other.get(16 << 20)).collect::<Vec<_>>());
        let third = Pool::with_limits(limits);
        drop(third.get(16 << 20));
        assert_eq!(third.cached_bytes(), 16 << 20);
        let fourth = Pool::with_limits(limits);
        drop(fourth.get(16 << 20));
        assert_eq!(fourth.cached_bytes(), 0, "the shared budget is spent");
        drop((pool, other, third));
        assert_eq!(SHARED.used.load(Ordering::Relaxed), 0);
        let big = fourth.get(64 << 20);
        assert_eq!(big.len(), 64 << 20);
    }

    #[test]
    fn keeps_at_most_per_class() {
        let pool = Pool::with_limits(Limits {
            keep_per_class: 1,
            ..DEFAULT_LIMITS
        });
        drop((pool.get(4096), pool.get(4096)));
        assert_eq!(pool.cached_bytes(), 4096);
    }
}
