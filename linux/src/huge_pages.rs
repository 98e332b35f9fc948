//! IO buffers carved from memory backed by transparent huge pages, so that each is physically
//! contiguous.
//!
//! A direct write takes one segment per physically contiguous run of its buffer's pages, and a
//! device takes a bounded number of segments per request (`max_segments`: 254 on virtio-blk).
//! From a buffer of scattered 4 KiB pages, a 1 MiB write needs 256 segments and goes to the
//! device as two requests, 1016 KiB and 8 KiB. On a device that serves requests one at a time,
//! that split alone cost the capture path a third of its sequential throughput. A buffer inside
//! one 2 MiB huge page is a single segment.
//!
//! Huge pages are a request, not a promise: with THP set to `never`, or memory too fragmented,
//! the region is ordinary pages, which works the same, only split as before.

use std::io;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

/// The huge page size on x86-64 and arm64 (with 4 KiB base pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// An anonymous mapping whose usable part starts on a huge page boundary; unmapped when the
/// last [`HugeSlice`] of it is dropped.
pub struct HugeRegion {
    map: NonNull<u8>,
    map_len: usize,
}

// SAFETY: the region is plain memory that this value owns; the slices handed out are disjoint.
unsafe impl Send for HugeRegion {}
// SAFETY: nothing reads or writes through a shared HugeRegion itself (only through slices).
unsafe impl Sync for HugeRegion {}

impl HugeRegion {
    /// `count` zeroed buffers of `each` bytes (a multiple of 4096), laid out back to back in one
    /// region that starts on a huge page boundary and is asked to be backed by huge pages. When
    /// `each` divides the huge page size (1 MiB, say), no buffer straddles two huge pages.
    /// Pages come at first touch (or when the buffers are pinned, as io_uring's registration
    /// does), huge ones where the kernel has them.
    pub fn slices(count: usize, each: usize) -> io::Result<Vec<HugeSlice>> {
        if each == 0 || !each.is_multiple_of(4096) || count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("huge page buffers: {count} of {each} bytes (want a multiple of 4096)"),
            ));
        }
        let len = count
            .checked_mul(each)
            .and_then(|n| n.checked_next_multiple_of(HUGE_PAGE))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "huge page region size"))?;
        // One huge page more than needed, so that an aligned start always fits inside.
        let map_len = len + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping; the result is checked before use.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(map.cast::<u8>()).expect("mmap returned a null mapping");
        let skip = (map.as_ptr() as usize).next_multiple_of(HUGE_PAGE) - map.as_ptr() as usize;
        // SAFETY: skip < HUGE_PAGE, so start..start+len lies inside the mapping of len + HUGE_PAGE.
        let start = unsafe { NonNull::new_unchecked(map.as_ptr().add(skip)) };
        let region = Arc::new(HugeRegion { map, map_len });
        // Best effort: where THP is off this fails or does nothing, and the pages are small.
        // SAFETY: the range is inside our mapping, and madvise only changes how it is backed.
        let advised = unsafe { libc::madvise(start.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
        if advised != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "MADV_HUGEPAGE refused");
        }
        Ok((0..count)
            .map(|i| HugeSlice {
                // SAFETY: i * each + each <= count * each <= len: inside the region.
                ptr: unsafe { NonNull::new_unchecked(start.as_ptr().add(i * each)) },
                len: each,
                _region: Arc::clone(&region),
            })
            .collect())
    }
}

impl Drop for HugeRegion {
    fn drop(&mut self) {
        // SAFETY: map and map_len are exactly what mmap returned and took; no slice is left.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

/// One buffer of a [`HugeRegion`], disjoint from every other; keeps the region mapped.
pub struct HugeSlice {
    ptr: NonNull<u8>,
    len: usize,
    _region: Arc<HugeRegion>,
}

// SAFETY: a HugeSlice owns its bytes exclusively (slices never overlap), like a Vec<u8>.
unsafe impl Send for HugeSlice {}
// SAFETY: shared references only allow reads of the owned bytes.
unsafe impl Sync for HugeSlice {}

impl Deref for HugeSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is inside the live region and belongs to this slice alone.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for HugeSlice {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_disjoint_zeroed_and_never_straddle_a_huge_page() {
        let mut s = HugeRegion::slices(5, 1 << 20).unwrap();
        assert_eq!(s.len(), 5);
        for (i, b) in s.iter_mut().enumerate() {
            assert_eq!(b.len(), 1 << 20);
            assert!(b.iter().all(|&x| x == 0));
            let at = b.as_ptr() as usize;
            assert_eq!(at % (1 << 20), 0, "slice {i} aligned to its size");
            assert_eq!(at / HUGE_PAGE, (at + b.len() - 1) / HUGE_PAGE, "slice {i}");
            b.fill(i as u8 + 1);
        }
        // Each slice kept what was written to it: no two overlap.
        for (i, b) in s.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8 + 1), "slice {i}");
        }
        // The region outlives any one slice.
        let last = s.pop().unwrap();
        drop(s);
        assert!(last.iter().all(|&x| x == 5));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(HugeRegion::slices(1, 1000).is_err());
        assert!(HugeRegion::slices(0, 4096).is_err());
        assert!(HugeRegion::slices(usize::MAX / 4096, 1 << 20).is_err());
    }
}
