//! The data pool: what a record holds.
//!
//! Generating fresh random bytes for every record would make the load generator slower than the
//! target it measures. Instead a pool (64 MiB by default) is generated once from the seed, and
//! record `seq` holds the slice of the pool at a position that is a hash of (seed, seq). The same
//! seed and payload kind always give the same pool, so `verify` can rebuild any record.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use rewind_formats::segment::encoding::FRAME_SPAN;
use rewind_formats::BLOCK;

use crate::model::hash3;

/// Default pool size. Never change it: recorded runs are verified against this.
pub const POOL_LEN: usize = 64 << 20;

/// The [`Payload::Fs`] pool's size: 131072 blocks, so that a 32 MiB dedup window (8192 records)
/// sees a block of the pool again only about 6% of the time besides the common blocks, which
/// repeat by design (a 64 MiB pool would repeat 39%: more dedup than the data means).
pub const FS_POOL_LEN: usize = 512 << 20;

/// Record positions in the pool are multiples of this.
const POOL_ALIGN: usize = 512;

/// Salts keep the hashes of different uses apart. Never change them.
const SALT_POOL_FILL: u64 = 0x706f_6f6c_6669_6c6c; // "poolfill"
const SALT_POOL_POS: u64 = 0x706f_6f6c_706f_7321; // "poolpos!"

/// Compressible pool mix, per 4 KiB block, in percent: all zero, text-like (with a zero tail),
/// or random. Tuned so zstd -1 compresses batches of it about 3:1, like an ext4 image.
const ZERO_BLOCK_PCT: u32 = 31;
const TEXT_BLOCK_PCT: u32 = 49;

/// File-system-like pool mix, per 4 KiB block, in percent: all zero, text-like, a copy of one
/// of [`FS_COMMON_BLOCKS`] common blocks (the same library or file in many places), the rest
/// random (compressed media, encrypted files).
const FS_ZERO_PCT: u32 = 10;
const FS_TEXT_PCT: u32 = 40;
const FS_COMMON_PCT: u32 = 25;
/// Distinct common blocks (4 MiB of them): few enough to repeat within a relay's dedup window,
/// many enough that one zstd frame of a batch rarely holds two copies.
const FS_COMMON_BLOCKS: usize = 1024;

/// What record payloads look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Incompressible random bytes.
    Random,
    /// A mix of zero runs, text-like words and random bytes: about 3:1 with zstd -1.
    Compressible,
    /// The [`Payload::Compressible`] pool, records placed on 32 KiB boundaries of it
    /// ([`FRAME_SPAN`]): a record of whole 32 KiB spans is made of pool frames that a
    /// [`FramePool`] encodes once, so a load generator sending framed records compresses
    /// nothing per record.
    CompressibleFrames,
    /// File system data: zero, text-like, repeated and random 4 KiB blocks (see `FS_*_PCT`),
    /// records placed on 4 KiB boundaries of the pool so that a repeated block is a repeated
    /// 4 KiB record block.
    Fs,
}

impl FromStr for Payload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Payload::Random),
            "compressible" => Ok(Payload::Compressible),
            "compressible-frames" => Ok(Payload::CompressibleFrames),
            "fs" => Ok(Payload::Fs),
            _ => Err(format!(
                "payload {s:?}: expected random, compressible, compressible-frames or fs"
            )),
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Payload::Random => "random",
            Payload::Compressible => "compressible",
            Payload::CompressibleFrames => "compressible-frames",
            Payload::Fs => "fs",
        })
    }
}

/// A pregenerated block of bytes that record data is sliced from.
pub struct DataPool {
    seed: u64,
    /// Record positions are multiples of this ([`POOL_ALIGN`], or 4 KiB for [`Payload::Fs`]).
    align: usize,
    bytes: Vec<u8>,
}

impl DataPool {
    /// The standard pool ([`POOL_LEN`] bytes, [`FS_POOL_LEN`] for [`Payload::Fs`]) for this
    /// seed and payload.
    pub fn new(seed: u64, payload: Payload) -> DataPool {
        let len = match payload {
            Payload::Fs => FS_POOL_LEN,
            Payload::Random | Payload::Compressible | Payload::CompressibleFrames => POOL_LEN,
        };
        DataPool::with_len(seed, payload, len)
    }

    /// A pool of `len` bytes (rounded up to 4 KiB); tests use small ones.
    pub fn with_len(seed: u64, payload: Payload, len: usize) -> DataPool {
        let len = len.max(4096).div_ceil(4096) * 4096;
        let mut bytes = vec![0u8; len];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ SALT_POOL_FILL);
        match payload {
            Payload::Random => rng.fill_bytes(&mut bytes),
            Payload::Compressible | Payload::CompressibleFrames => {
                fill_compressible(&mut rng, &mut bytes)
            }
            Payload::Fs => fill_fs(&mut rng, &mut bytes),
        }
        let align = match payload {
            Payload::Fs => 4096,
            Payload::CompressibleFrames => FRAME_SPAN,
            Payload::Random | Payload::Compressible => POOL_ALIGN,
        };
        DataPool { seed, align, bytes }
    }

    /// Pool size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a pool has at least 4 KiB.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Where the data of record `seq` (of `len` bytes) starts in the pool.
    ///
    /// Panics if `len` exceeds the pool (callers validate record sizes first).
    pub fn position(&self, seq: u64, len: usize) -> usize {
        assert!(
            len <= self.bytes.len(),
            "record of {len} bytes exceeds the data pool"
        );
        let slots = ((self.bytes.len() - len) / self.align + 1) as u64;
        (hash3(self.seed, SALT_POOL_POS, seq) % slots) as usize * self.align
    }

    /// The data of record `seq`, `len` bytes.
    pub fn record_data(&self, seq: u64, len: usize) -> &[u8] {
        let pos = self.position(seq, len);
        &self.bytes[pos..pos + len]
    }

    /// The pool's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Every [`FRAME_SPAN`] of a pool encoded once as a journal frame (zstd with its checksum):
/// what a framed record of whole spans at a span boundary of the pool is made of.
pub struct FramePool {
    /// The frames back to back.
    frames: Vec<u8>,
    /// Start of frame i in `frames`; one more entry for the end.
    starts: Vec<usize>,
}

impl FramePool {
    /// Encodes every whole span of `pool` at zstd `level`.
    pub fn new(pool: &DataPool, level: i32) -> std::io::Result<FramePool> {
        let mut c = zstd::bulk::Compressor::new(level)?;
        c.include_checksum(true)?;
        let mut frames = Vec::new();
        let mut starts = vec![0];
        for span in pool.bytes.chunks_exact(FRAME_SPAN) {
            frames.extend_from_slice(&c.compress(span)?);
            starts.push(frames.len());
        }
        Ok(FramePool { frames, starts })
    }

    /// Appends the table ++ frames of the `len` pool bytes at `pos` to `out` when they are
    /// whole spans at a span boundary and encoding saves at least a BLOCK (as a journal
    /// writer would store them); returns false, `out` as it was, otherwise.
    pub fn encode(&self, pos: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if !pos.is_multiple_of(FRAME_SPAN) || !len.is_multiple_of(FRAME_SPAN) || len == 0 {
            return false;
        }
        let (first, n) = (pos / FRAME_SPAN, len / FRAME_SPAN);
        if first + n >= self.starts.len() {
            return false;
        }
        let (start, end) = (self.starts[first], self.starts[first + n]);
        if 4 * n + end - start + BLOCK > len {
            return false;
        }
        for i in first..first + n {
            out.extend_from_slice(&((self.starts[i + 1] - self.starts[i]) as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.frames[start..end]);
        true
    }
}

/// Fills `out` (a multiple of 4 KiB) with ext4-like content.
fn fill_compressible(rng: &mut Xoshiro256PlusPlus, out: &mut [u8]) {
    let vocab = vocabulary(rng);
    for block in out.chunks_mut(4096) {
        let r = rng.gen_range(0..100);
        if r < ZERO_BLOCK_PCT {
            continue; // already zero
        }
        if r >= ZERO_BLOCK_PCT + TEXT_BLOCK_PCT {
            rng.fill_bytes(block);
            continue;
        }
        fill_text(rng, &vocab, block);
    }
}

/// Fills `out` (a multiple of 4 KiB) with file-system-like blocks (the `FS_*` mix).
fn fill_fs(rng: &mut Xoshiro256PlusPlus, out: &mut [u8]) {
    let vocab = vocabulary(rng);
    // Common blocks: half text-like (configuration, scripts), half random (binaries).
    let common: Vec<[u8; 4096]> = (0..FS_COMMON_BLOCKS)
        .map(|i| {
            let mut b = [0u8; 4096];
            if i % 2 == 0 {
                fill_text(rng, &vocab, &mut b);
            } else {
                rng.fill_bytes(&mut b);
            }
            b
        })
        .collect();
    for block in out.chunks_mut(4096) {
        let r = rng.gen_range(0..100);
        if r < FS_ZERO_PCT {
            continue;
        } else if r < FS_ZERO_PCT + FS_TEXT_PCT {
            fill_text(rng, &vocab, block);
        } else if r < FS_ZERO_PCT + FS_TEXT_PCT + FS_COMMON_PCT {
            block.copy_from_slice(&common[rng.gen_range(0..FS_COMMON_BLOCKS)]);
        } else {
            rng.fill_bytes(block);
        }
    }
}

/// 1024 random words of 2 to 12 characters.
fn vocabulary(rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<u8>> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_/.";
    (0..1024)
        .map(|_| {
            let n = rng.gen_range(2..=12);
            (0..n)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect()
        })
        .collect()
}

/// Text-like words up to a random length of `block`, then a zero tail (a partly used block).
fn fill_text(rng: &mut Xoshiro256PlusPlus, vocab: &[Vec<u8>], block: &mut [u8]) {
    const SEPARATORS: &[u8] = b"        \n=:,";
    let used = rng.gen_range(1024..=block.len());
    let mut i = 0;
    while i < used {
        let w = &vocab[rng.gen_range(0..vocab.len())];
        let n = w.len().min(used - i);
        block[i..i + n].copy_from_slice(&w[..n]);
        i += n;
        if i < used {
            block[i] = SEPARATORS[rng.gen_range(0..SEPARATORS.len())];
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ratio(pool: &DataPool, record_len: usize, batch_bytes: usize) -> f64 {
        let mut raw = Vec::new();
        let mut seq = 1;
        while raw.len() < batch_bytes * 4 {
            raw.extend_from_slice(pool.record_data(seq, record_len));
            seq += 1;
        }
        let mut compressed = 0;
        for chunk in raw.chunks(batch_bytes) {
            compressed += zstd::bulk::compress(chunk, 1).unwrap().len();
        }
        raw.len() as f64 / compressed as f64
    }

    #[test]
    fn pool_is_deterministic_and_seed_dependent() {
        let a = DataPool::with_len(7, Payload::Random, 1 << 20);
        let b = DataPool::with_len(7, Payload::Random, 1 << 20);
        let c = DataPool::with_len(8, Payload::Random, 1 << 20);
        assert_eq!(a.bytes, b.bytes);
        assert_ne!(a.bytes, c.bytes);
        assert_eq!(a.record_data(5, 4096), b.record_data(5, 4096));
        let d = DataPool::with_len(7, Payload::Compressible, 1 << 20);
        let e = DataPool::with_len(7, Payload::Compressible, 1 << 20);
        assert_eq!(d.bytes, e.bytes);
    }

    #[test]
    fn positions_stay_in_the_pool_and_aligned() {
        let pool = DataPool::with_len(1, Payload::Random, 1 << 20);
        for seq in 1..10_000 {
            for len in [512, 4096, 65536, 1 << 20] {
                let p = pool.position(seq, len);
                assert!(p + len <= pool.len());
                assert_eq!(p % POOL_ALIGN, 0);
            }
        }
        // 999 draws over 2041 positions: about 790 distinct ones if uniform.
        let distinct: std::collections::HashSet<usize> =
            (1..1000).map(|s| pool.position(s, 4096)).collect();
        assert!((740..840).contains(&distinct.len()), "{}", distinct.len());
    }

    #[test]
    fn frame_pool_encodings_are_what_the_journal_checks_and_decode_to_the_pool() {
        let pool = DataPool::with_len(5, Payload::CompressibleFrames, 4 << 20);
        let frames = FramePool::new(&pool, 1).unwrap();
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        let mut encoded = 0;
        for seq in 1..200 {
            let len = 256 << 10;
            let pos = pool.position(seq, len);
            assert_eq!(pos % FRAME_SPAN, 0);
            let mut out = Vec::new();
            if !frames.encode(pos, len, &mut out) {
                continue;
            }
            encoded += 1;
            let crc = crc32c::crc32c(&out);
            rewind_formats::framed::check_frames(len as u32, crc, &out).unwrap();
            let mut plain = vec![0; len];
            let mut region = out.clone();
            region.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
            rewind_formats::segment::encoding::decode_record(
                &mut d, len as u32, crc, &region, &mut plain,
            )
            .unwrap();
            assert_eq!(plain, pool.record_data(seq, len));
        }
        assert!(encoded > 150, "{encoded} of 199 records encoded");
        // Not whole spans, or not at a span boundary: the caller encodes them itself.
        let mut out = Vec::new();
        assert!(!frames.encode(0, FRAME_SPAN + 4096, &mut out));
        assert!(!frames.encode(4096, FRAME_SPAN, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn random_payload_does_not_compress() {
        let pool = DataPool::with_len(3, Payload::Random, 16 << 20);
        let r = ratio(&pool, 4096, 1 << 20);
        assert!(r < 1.05, "ratio {r}");
    }

    #[test]
    fn fs_payload_repeats_whole_blocks_and_compresses_some() {
        // (A 64 MiB pool, not the standard 512 MiB one: quicker, and repeats show better.)
        let pool = DataPool::with_len(3, Payload::Fs, 64 << 20);
        assert_eq!(
            pool.bytes,
            DataPool::with_len(3, Payload::Fs, 64 << 20).bytes
        );
        for seq in 1..1000 {
            assert_eq!(pool.position(seq, 4096) % 4096, 0);
        }
        // 8192 records (32 MiB, a relay's default dedup window) from the 16384 blocks of the
        // pool: most of the common quarter repeats a block seen before, and a record drawn
        // from a block position drawn before repeats it too (about 1700 of the rest).
        let mut seen = std::collections::HashSet::new();
        let (mut repeats, mut zero) = (0, 0);
        for seq in 1..=8192 {
            let d = pool.record_data(seq, 4096);
            if d.iter().all(|&b| b == 0) {
                zero += 1;
            } else if !seen.insert(d.to_vec()) {
                repeats += 1;
            }
        }
        let r = ratio(&pool, 4096, 1 << 20);
        eprintln!("fs, 4 KiB records: zstd -1 ratio {r:.2}, {repeats} repeats, {zero} zero");
        assert!((1.4..3.0).contains(&r), "ratio {r}");
        assert!((2000..3200).contains(&repeats), "{repeats} repeated blocks");
        assert!((600..1100).contains(&zero), "{zero} zero blocks");
    }

    #[test]
    fn compressible_payload_is_about_three_to_one() {
        let pool = DataPool::with_len(3, Payload::Compressible, 16 << 20);
        for len in [4096, 65536, 1 << 20] {
            let r = ratio(&pool, len, 4 << 20);
            eprintln!("compressible, record {len}: zstd -1 ratio {r:.2}");
            assert!((2.5..3.6).contains(&r), "record {len}: ratio {r}");
        }
    }
}
