//! Journal chunk buffers: [`AlignedBuf`]s whose length is rounded up to the journal block, so
//! O_DIRECT writes can take them as they are (chunks built by `rewind_formats::segment` are
//! already `BLOCK`-sized; only the memory needs aligning).

use std::sync::{Arc, LazyLock};

use rewind_formats::BLOCK;
use rewind_linux::aligned::{AlignedBuf, Limits, Pool};

/// Recycled batch buffers, shared by every session. Reusing them spares every batch a fresh
/// mmap, its page faults and the kernel's zeroing: a fifth of the daemon's time before.
static POOL: LazyLock<Arc<Pool>> = LazyLock::new(|| {
    Pool::with_limits(Limits {
        min_shift: 16,              // 64 KiB
        max_shift: 29,              // 512 MiB: nothing larger fits in what is kept
        keep_per_class: usize::MAX, // bounded by bytes alone
        keep_bytes: 512 << 20,
        shared: None,
    })
});

fn rounded(len: usize) -> usize {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

/// A zeroed buffer of `len` bytes rounded up to a multiple of `BLOCK`.
pub fn zeroed(len: usize) -> AlignedBuf {
    AlignedBuf::new(rounded(len))
}

/// A buffer of `len` bytes (rounded up to `BLOCK`) from the pool. Its contents are whatever an
/// earlier user left: callers overwrite every byte (the chunk encoders do, padding included).
pub fn pooled(len: usize) -> AlignedBuf {
    POOL.get(rounded(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_and_keeps_alignment() {
        let a = pooled(100_000);
        assert_eq!(a.len(), 25 * BLOCK);
        assert_eq!(a.as_ptr() as usize % BLOCK, 0);
        drop(a);
        let b = pooled(120_000);
        assert_eq!(b.len(), 30 * BLOCK);
        assert_eq!(b.as_ptr() as usize % BLOCK, 0);
    }

    #[test]
    fn aligned_and_rounded() {
        let mut b = zeroed(5000);
        assert_eq!(b.len(), 2 * BLOCK);
        assert_eq!(b.as_ptr() as usize % BLOCK, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[4999] = 7;
        assert_eq!(b[4999], 7);
    }
}
