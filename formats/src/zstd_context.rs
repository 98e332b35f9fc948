//! One zstd decompression context per thread, reused call after call.
//!
//! Making a context costs more than decompressing a 32 KiB journal frame, and showed in a
//! receiving target's profile when made per batch (`ZSTD_createDCtx`, about 1% at 2 GB/s).
//! A context is reset at the start of every frame, so what a bad input left in it does not
//! reach the next call.

use std::cell::RefCell;
use std::io;

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Runs `f` with this thread's decompressor, made on first use (the only error of its own).
pub fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> T,
) -> io::Result<T> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        Ok(f(d.as_mut().expect("just set")))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_frame_does_not_spoil_the_next() {
        let good = zstd::bulk::compress(&[7u8; 10_000], 1).unwrap();
        let mut bad = good.clone();
        let n = bad.len();
        bad.truncate(n - 3);
        let run = |input: &[u8]| {
            super::with_decompressor(|d| d.decompress(input, 10_000))
                .unwrap()
                .ok()
        };
        assert_eq!(run(&bad), None, "a truncated frame fails");
        assert_eq!(
            run(&good),
            Some(vec![7u8; 10_000]),
            "the same context goes on"
        );
    }
}
