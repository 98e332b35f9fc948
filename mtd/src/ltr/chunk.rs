//! Chunks: content-addressed by the BLAKE3 hash of their plain bytes, stored zstd-compressed
//! under `chunks/<hash>`. Hash before compressing so that the same data has one name whatever
//! the compressor does; check the hash after decompressing so that a damaged object is an error
//! naming it, never data.

use super::error::{LtrError, Result};

/// zstd level for chunks: level 1 keeps archiving well above 200 MB/s on one core and still
/// takes typical file-system data down by half or more.
const LEVEL: i32 = 1;

/// A chunk hash (BLAKE3, 32 bytes).
pub type Hash = [u8; 32];

pub fn hash(plain: &[u8]) -> Hash {
    *blake3::hash(plain).as_bytes()
}

pub fn to_hex(h: &Hash) -> String {
    blake3::Hash::from_bytes(*h).to_hex().to_string()
}

/// A manifest's hex entry as a hash (the manifest was validated: 64 lowercase hex digits).
pub fn from_hex(s: &str) -> Option<Hash> {
    blake3::Hash::from_hex(s).ok().map(|h| *h.as_bytes())
}

pub fn key(h: &Hash) -> String {
    format!("chunks/{}", to_hex(h))
}

pub fn is_zero(b: &[u8]) -> bool {
    // Eight bytes at a time; a short tail byte by byte.
    let mut words = b.chunks_exact(8);
    words.all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && words.remainder().iter().all(|x| *x == 0)
}

pub fn compress(plain: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(plain, LEVEL).expect("zstd compresses into a fresh buffer")
}

/// The plain bytes of a stored chunk, checked against its name.
pub fn decode(h: &Hash, stored: &[u8], chunk_size: usize) -> Result<Vec<u8>> {
    let corrupt = |why: String| LtrError::Corrupt { key: key(h), why };
    let plain = zstd::bulk::decompress(stored, chunk_size)
        .map_err(|e| corrupt(format!("does not decompress: {e}")))?;
    let got = hash(&plain);
    if &got != h {
        return Err(corrupt(format!(
            "its bytes hash to {}, not to its name",
            to_hex(&got)
        )));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_named() {
        let plain: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let h = hash(&plain);
        let stored = compress(&plain);
        assert_eq!(decode(&h, &stored, 65536).unwrap(), plain);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        let mut other = plain.clone();
        other[7] ^= 1;
        let err = decode(&h, &compress(&other), 65536)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&key(&h)), "{err}");
        assert!(decode(&h, b"garbage", 65536).is_err());
        assert!(is_zero(&[0; 100]));
        assert!(!is_zero(&other));
    }
}
