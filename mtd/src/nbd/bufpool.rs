//! Payload buffers reused across requests of one connection.
//!
//! A fresh `vec![0; 256 KiB]` per READ costs a zeroing pass (or, for large sizes, page faults on
//! first touch) that is comparable to the read itself from the page cache. Buffers come in
//! power-of-two size classes and go back to their class when dropped; the pool keeps at most
//! `MAX_CACHED_BYTES`, and all pools together at most `MAX_CACHED_BYTES_ALL`, so idle connections
//! hold little, however many there are.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Smallest class (4 KiB).
const MIN_SHIFT: u32 = 12;
/// Largest payload class: 32 MiB (the protocol's READ/WRITE limit we advertise).
const MAX_SHIFT: u32 = 25;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Cached (idle) bytes kept per connection: enough for nbdcopy's 64 x 256 KiB in flight.
const MAX_CACHED_BYTES: usize = 16 << 20;
/// Cached bytes across every connection's pool.
const MAX_CACHED_BYTES_ALL: usize = 256 << 20;
static CACHED_ALL: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Free {
    classes: [Vec<Vec<u8>>; CLASSES],
    cached_bytes: usize,
}

#[derive(Default)]
pub struct BufPool {
    free: Mutex<Free>,
}

/// A buffer of `len` usable bytes (its allocation may be larger); returns to its pool on drop.
pub struct Buf {
    data: Vec<u8>,
    len: usize,
    pool: Option<Arc<BufPool>>,
}

fn class_of(len: usize) -> Option<usize> {
    let size = len.max(1 << MIN_SHIFT).next_power_of_two();
    let shift = size.trailing_zeros();
    (shift <= MAX_SHIFT).then(|| (shift - MIN_SHIFT) as usize)
}

impl BufPool {
    pub fn new() -> Arc<BufPool> {
        Arc::new(BufPool::default())
    }

    /// A buffer with `len` usable bytes. Its contents are whatever the last user left: callers
    /// overwrite all of it (a read fills it, a socket read fills it).
    pub fn get(self: &Arc<Self>, len: usize) -> Buf {
        let Some(class) = class_of(len) else {
            // Larger than any payload we accept; not pooled.
            return Buf {
                data: vec![0; len],
                len,
                pool: None,
            };
        };
        let reused = {
            let mut f = self.free.lock().expect("buffer pool lock");
            let b = f.classes[class].pop();
            if let Some(b) = &b {
                f.cached_bytes -= b.len();
                CACHED_ALL.fetch_sub(b.len(), Ordering::Relaxed);
            }
            b
        };
        let data = reused.unwrap_or_else(|| vec![0; 1 << (class as u32 + MIN_SHIFT)]);
        Buf {
            data,
            len,
            pool: Some(self.clone()),
        }
    }

    fn put(&self, data: Vec<u8>) {
        let Some(class) = class_of(data.len()) else {
            return;
        };
        let mut f = self.free.lock().expect("buffer pool lock");
        if f.cached_bytes + data.len() > MAX_CACHED_BYTES {
            return;
        }
        let all = CACHED_ALL.fetch_add(data.len(), Ordering::Relaxed);
        if all + data.len() > MAX_CACHED_BYTES_ALL {
            CACHED_ALL.fetch_sub(data.len(), Ordering::Relaxed);
            return;
        }
        f.cached_bytes += data.len();
        f.classes[class].push(data);
    }

    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.free.lock().unwrap().cached_bytes
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        let f = self.free.get_mut().unwrap_or_else(|e| e.into_inner());
        CACHED_ALL.fetch_sub(f.cached_bytes, Ordering::Relaxed);
    }
}

impl Buf {
    /// An unpooled buffer (tests, rare paths).
    #[cfg(test)]
    pub fn from_vec(data: Vec<u8>) -> Buf {
        let len = data.len();
        Buf {
            data,
            len,
            pool: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_class() {
        let pool = BufPool::new();
        let mut a = pool.get(5000);
        assert_eq!(a.len(), 5000);
        a[4999] = 7;
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool.cached_bytes(), 8192);
        let b = pool.get(8000);
        assert_eq!(b.as_ptr(), ptr, "same class reuses the allocation");
        assert_eq!(pool.cached_bytes(), 0);
        let c = pool.get(0);
        assert!(c.is_empty());
    }

    #[test]
    fn cache_is_bounded() {
        let pool = BufPool::new();
        let bufs: Vec<Buf> = (0..3).map(|_| pool.get(16 << 20)).collect();
        drop(bufs);
        assert!(pool.cached_bytes() <= MAX_CACHED_BYTES);
        let big = pool.get(64 << 20);
        assert_eq!(big.len(), 64 << 20);
    }
}
