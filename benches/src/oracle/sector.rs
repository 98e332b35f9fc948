//! The self-describing block the oracle workload writes: a header that says which write it is,
//! where it belongs and when it was made, a checksum over all of it, and a body derived from
//! the header (so a block from one write can never pass for another's).
//!
//! | bytes    | field                                              |
//! |----------|----------------------------------------------------|
//! | 0..8     | magic `RWSECTR1`                                   |
//! | 8..16    | write seq (1, 2, ...: the workload's own order), LE |
//! | 16..24   | byte offset of this block on the disk, LE          |
//! | 24..32   | time of the write, unix microseconds, LE           |
//! | 32..36   | crc32c of bytes 0..32 and 36..4096, LE             |
//! | 36..4096 | body: a function of (seq, offset)                  |

/// The oracle's unit: one block of the protected disk.
pub const BLOCK: usize = 4096;
const MAGIC: &[u8; 8] = b"RWSECTR1";

/// What a block's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub offset: u64,
    pub time_us: u64,
}

/// What a block of a view holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// All zeros: never written.
    Zero,
    Written(Header),
    /// Neither zeros nor a valid block: torn, shifted or corrupted.
    Garbage,
}

/// Fills `buf` (one block) for write `seq` at `offset`.
pub fn fill(buf: &mut [u8], h: Header) {
    assert_eq!(buf.len(), BLOCK);
    buf[0..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&h.seq.to_le_bytes());
    buf[16..24].copy_from_slice(&h.offset.to_le_bytes());
    buf[24..32].copy_from_slice(&h.time_us.to_le_bytes());
    let mut x = h.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ h.offset;
    for chunk in buf[36..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    let crc = checksum(buf);
    buf[32..36].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(buf: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&buf[0..32]), &buf[36..])
}

/// Reads a block found at `offset`: it must be zeros, or a valid block made for that offset.
pub fn parse(buf: &[u8], offset: u64) -> Block {
    if buf.iter().all(|b| *b == 0) {
        return Block::Zero;
    }
    let le = |r: std::ops::Range<usize>| u64::from_le_bytes(buf[r].try_into().unwrap_or([0; 8]));
    if buf.len() != BLOCK || &buf[0..8] != MAGIC {
        return Block::Garbage;
    }
    let stored = u32::from_le_bytes([buf[32], buf[33], buf[34], buf[35]]);
    let h = Header {
        seq: le(8..16),
        offset: le(16..24),
        time_us: le(24..32),
    };
    if stored != checksum(buf) || h.offset != offset || h.seq == 0 {
        return Block::Garbage;
    }
    // The body is a function of the header: recompute it (a block with a valid header but
    // another write's body would be a torn mix).
    let mut want = vec![0u8; BLOCK];
    fill(&mut want, h);
    if want != buf {
        return Block::Garbage;
    }
    Block::Written(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_damage_is_garbage() {
        let h = Header {
            seq: 7,
            offset: 8192,
            time_us: 123,
        };
        let mut b = vec![0u8; BLOCK];
        assert_eq!(parse(&b, 0), Block::Zero);
        fill(&mut b, h);
        assert_eq!(parse(&b, 8192), Block::Written(h));
        assert_eq!(parse(&b, 4096), Block::Garbage, "misplaced");
        b[100] ^= 1;
        assert_eq!(parse(&b, 8192), Block::Garbage, "corrupted body");
        let mut torn = vec![0u8; BLOCK];
        fill(&mut torn, h);
        torn[2048..].fill(0);
        assert_eq!(parse(&torn, 8192), Block::Garbage, "torn");
    }
}
