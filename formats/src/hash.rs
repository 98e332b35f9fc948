//! The block hash of HASHES messages: both sides of a resync hash their blocks the same way and
//! send only the blocks whose hashes differ.

/// xxh3-64 (seed 0) of one block. Fast (tens of GB/s), and 64 bits make an accidental match of
/// two different blocks negligible for resync (a collision would leave one block unsent).
pub fn block_hash(block: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_values() {
        // Pinned: a change of hash function must bump the HASHES layout version.
        assert_eq!(block_hash(&[]), 0x2d06800538d394c2);
        assert_ne!(block_hash(&[0u8; 4096]), block_hash(&[1u8; 4096]));
    }
}
