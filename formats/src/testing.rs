//! Test data shared by the crates' tests: deterministic bytes that do not compress (so that a
//! test of compression or dedup is not fooled by a pattern) without a random-number crate.

/// `len` bytes of xorshift64 output from `seed` (non-zero): incompressible, and the same on
/// every run and platform.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    assert_ne!(seed, 0, "xorshift stays at 0 from a 0 seed");
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_bytes_do_not_compress_and_depend_on_the_seed() {
        let a = super::random_bytes(65536, 1);
        assert_eq!(a, super::random_bytes(65536, 1));
        assert_ne!(a, super::random_bytes(65536, 2));
        let z = zstd::bulk::compress(&a, 3).unwrap();
        assert!(z.len() >= a.len(), "{} compressed to {}", a.len(), z.len());
    }
}
