//! A heap buffer aligned to the journal block size, so O_DIRECT writes can take it as is.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use rewind_formats::BLOCK;

/// A zero-initialised, `BLOCK`-aligned byte buffer whose length is a multiple of `BLOCK`.
///
/// O_DIRECT needs the memory address, the length and the file offset all aligned; chunks built by
/// `rewind_formats::segment` are already `BLOCK`-sized, so only the memory needs this type.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

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
        AlignedBuf { ptr, len }
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
        // SAFETY: ptr was allocated in `zeroed` with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
