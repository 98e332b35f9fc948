//! How a data record's bytes are stored in a chunk: as they are (raw), or as small independent
//! zstd frames, so that compressible data costs less disk and a small read decompresses little.
//!
//! An encoded (zstd) record's data region:
//!
//! ```text
//! table   n x u32 LE: the compressed length of each frame, n = ceil(len / FRAME_SPAN)
//! frames  n independent zstd frames back to back; frame i holds the record's plain bytes
//!         i*FRAME_SPAN .. min((i+1)*FRAME_SPAN, len)
//! padding zero, up to a multiple of BLOCK
//! ```
//!
//! The entry's `data_crc` is crc32c(table ++ frames), so a scan verifies a record without
//! decompressing it. A reader of a piece reads the table, then only the frames the piece
//! covers. [`FRAME_SPAN`] is 32 KiB: a random 4 KiB read decompresses at most 32 KiB (tens of
//! microseconds), while zstd's ratio at 32 KiB is within a few percent of 64 KiB on block data.

use crate::{DecodeError, BLOCK, MAX_RECORD_LEN};

/// Plain bytes per frame (the last frame of a record may hold fewer).
pub const FRAME_SPAN: usize = 32 * 1024;

/// Largest compressed frame a reader accepts: zstd's bound for one [`FRAME_SPAN`].
pub const MAX_FRAME_LEN: u32 = (FRAME_SPAN + FRAME_SPAN / 256 + 64) as u32;

/// How a data record's bytes are stored (the entry's byte 11, the footer extent's byte 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// The plain bytes, zero padded to BLOCK.
    #[default]
    Raw = 0,
    /// A frame table and independent zstd frames (see the module docs).
    Zstd = 1,
}

impl Encoding {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The encoding with this value; `what` names the field for the error.
    pub fn decode(what: &'static str, v: u8) -> Result<Encoding, DecodeError> {
        match v {
            0 => Ok(Encoding::Raw),
            1 => Ok(Encoding::Zstd),
            _ => Err(DecodeError::invalid(what, format!("unknown encoding {v}"))),
        }
    }
}

/// Frames of a record of `len` plain bytes.
pub fn frame_count(len: u32) -> usize {
    (len as usize).div_ceil(FRAME_SPAN)
}

/// Bytes of the frame table of a record of `len` plain bytes.
pub fn table_len(len: u32) -> usize {
    4 * frame_count(len)
}

/// The plain byte range `[start, end)` of frame `i` of a record of `len` bytes.
pub fn frame_range(len: u32, i: usize) -> (usize, usize) {
    let start = i * FRAME_SPAN;
    (start, (start + FRAME_SPAN).min(len as usize))
}

/// Appends `data` (a record's plain bytes) encoded as table ++ frames to `out`, with `c` (a
/// reused compressor: its level is the caller's). Returns false, with `out` as it was, when
/// encoding would not save at least one BLOCK on disk, or when the frames so far save less than
/// 1/16 of their plain bytes (incompressible data costs one frame of effort, not a record's):
/// the record is then stored raw.
pub fn encode_record(c: &mut zstd::bulk::Compressor<'_>, data: &[u8], out: &mut Vec<u8>) -> bool {
    assert!(
        !data.is_empty() && data.len() <= MAX_RECORD_LEN as usize,
        "a record is 1..=MAX_RECORD_LEN bytes"
    );
    let base = out.len();
    let raw_stored = data.len().div_ceil(BLOCK) * BLOCK;
    // Past this the encoding saves less than a BLOCK.
    let budget = raw_stored.saturating_sub(BLOCK);
    let n = frame_count(data.len() as u32);
    out.resize(base + 4 * n, 0);
    for (i, span) in data.chunks(FRAME_SPAN).enumerate() {
        let start = out.len();
        out.resize(start + MAX_FRAME_LEN as usize, 0);
        let Ok(clen) = c.compress_to_buffer(span, &mut out[start..]) else {
            out.truncate(base);
            return false;
        };
        out.truncate(start + clen);
        out[base + 4 * i..base + 4 * i + 4].copy_from_slice(&(clen as u32).to_le_bytes());
        let stored = out.len() - base;
        let plain = (i * FRAME_SPAN + span.len()).min(data.len());
        if stored > budget || stored > plain - plain / 16 {
            out.truncate(base);
            return false;
        }
    }
    true
}

/// Reads the frame table at the start of an encoded record's region (`region` holds at least
/// its [`table_len`] bytes): the compressed length of each frame, each checked against
/// [`MAX_FRAME_LEN`].
pub fn read_table(len: u32, region: &[u8]) -> Result<Vec<u32>, DecodeError> {
    let n = frame_count(len);
    let Some(t) = region.get(..4 * n) else {
        return Err(DecodeError::Truncated {
            need: 4 * n,
            have: region.len(),
        });
    };
    t.chunks_exact(4)
        .enumerate()
        .map(|(i, b)| {
            let l = u32::from_le_bytes(b.try_into().expect("4 bytes"));
            if l == 0 || l > MAX_FRAME_LEN {
                return Err(DecodeError::invalid(
                    "frame table",
                    format!("frame {i} of {n}: compressed length {l} not in 1..={MAX_FRAME_LEN}"),
                ));
            }
            Ok(l)
        })
        .collect()
}

/// Bytes of table ++ frames, what `data_crc` covers.
pub fn stored_len(len: u32, table: &[u32]) -> usize {
    table_len(len) + table.iter().map(|&l| l as usize).sum::<usize>()
}

/// Offset of frame `i` from the start of the region.
pub fn frame_offset(len: u32, table: &[u32], i: usize) -> usize {
    table_len(len) + table[..i].iter().map(|&l| l as usize).sum::<usize>()
}

/// Decompresses one frame into `out`, which must be exactly the frame's plain length: a frame
/// that decompresses to any other length is an error.
pub fn decode_frame(
    d: &mut zstd::bulk::Decompressor<'_>,
    frame: &[u8],
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let want = out.len();
    match d.decompress_to_buffer(frame, out) {
        Ok(n) if n == want => Ok(()),
        Ok(n) => Err(DecodeError::Decompress(format!(
            "frame decompressed to {n} bytes, not {want}"
        ))),
        Err(e) => Err(DecodeError::Decompress(e.to_string())),
    }
}

/// The checks every reader of a whole encoded record makes: its table (each length in
/// 1..=[`MAX_FRAME_LEN`]), that table ++ frames fit in `region` (which starts at the record's
/// data and may run past them) and that their crc is `data_crc`. Returns the table and the
/// stored bytes (table ++ frames), so nothing damaged is decompressed.
pub fn checked_frames(
    len: u32,
    data_crc: u32,
    region: &[u8],
) -> Result<(Vec<u32>, &[u8]), DecodeError> {
    let table = read_table(len, region)?;
    let stored = stored_len(len, &table);
    let Some(bytes) = region.get(..stored) else {
        return Err(DecodeError::Truncated {
            need: stored,
            have: region.len(),
        });
    };
    if crc32c::crc32c(bytes) != data_crc {
        return Err(DecodeError::PayloadChecksum);
    }
    Ok((table, bytes))
}

/// Checks an encoded record's region (`region`: from the record's data_pos to the end of its
/// padded region): [`checked_frames`], and that the padding after them is shorter than a BLOCK
/// and zero.
pub fn verify_encoded(len: u32, data_crc: u32, region: &[u8]) -> Result<(), DecodeError> {
    let (_, bytes) = checked_frames(len, data_crc, region)?;
    let stored = bytes.len();
    if region.len() != stored.div_ceil(BLOCK) * BLOCK {
        return Err(DecodeError::invalid(
            "encoded record",
            format!(
                "{stored} bytes of table and frames in a region of {} bytes",
                region.len()
            ),
        ));
    }
    if let Some(at) = region[stored..].iter().position(|&b| b != 0) {
        return Err(DecodeError::invalid(
            "encoded record",
            format!(
                "padding byte {} (after {stored} bytes of table and frames) is not zero",
                stored + at
            ),
        ));
    }
    Ok(())
}

/// Decodes a whole encoded record (`region` from its data_pos, at least table ++ frames) into
/// `out` (exactly `len` bytes). Checks the crc first: nothing damaged is decompressed.
pub fn decode_record(
    d: &mut zstd::bulk::Decompressor<'_>,
    len: u32,
    data_crc: u32,
    region: &[u8],
    out: &mut [u8],
) -> Result<(), DecodeError> {
    assert_eq!(out.len(), len as usize, "output is not the record's length");
    let (table, bytes) = checked_frames(len, data_crc, region)?;
    let mut at = table_len(len);
    for (i, &clen) in table.iter().enumerate() {
        let (s, e) = frame_range(len, i);
        decode_frame(d, &bytes[at..at + clen as usize], &mut out[s..e])?;
        at += clen as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressible(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i / 64) % 7) as u8).collect()
    }

    fn encode(data: &[u8]) -> Option<Vec<u8>> {
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        // Appends after what `out` holds, and leaves it as it was when it gives up.
        let mut out = vec![9u8; 3];
        let done = encode_record(&mut c, data, &mut out);
        assert_eq!(&out[..3], &[9, 9, 9]);
        if !done {
            assert_eq!(out.len(), 3);
        }
        done.then(|| out.split_off(3))
    }

    fn padded(mut v: Vec<u8>) -> Vec<u8> {
        v.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
        v
    }

    #[test]
    fn round_trip_whole_and_by_frame() {
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        for len in [
            8192usize,
            FRAME_SPAN,
            FRAME_SPAN + 512,
            5 * FRAME_SPAN - 4096,
            1 << 20,
        ] {
            let data = compressible(len);
            let enc = encode(&data).expect("compressible data is encoded");
            assert!(enc.len() + BLOCK <= len, "{len}: {} stored", enc.len());
            let crc = crc32c::crc32c(&enc);
            let region = padded(enc.clone());
            verify_encoded(len as u32, crc, &region).unwrap();
            let mut out = vec![0xAA; len];
            decode_record(&mut d, len as u32, crc, &region, &mut out).unwrap();
            assert_eq!(out, data);
            let table = read_table(len as u32, &region).unwrap();
            assert_eq!(table.len(), len.div_ceil(FRAME_SPAN));
            for i in 0..table.len() {
                let (s, e) = frame_range(len as u32, i);
                let at = frame_offset(len as u32, &table, i);
                let mut f = vec![0; e - s];
                decode_frame(&mut d, &region[at..at + table[i] as usize], &mut f).unwrap();
                assert_eq!(f, data[s..e]);
            }
        }
    }

    #[test]
    fn incompressible_or_small_records_stay_raw() {
        let random = crate::testing::random_bytes(65536, 0x9E37_79B9_7F4A_7C15);
        assert!(encode(&random).is_none());
        // One BLOCK can never save a BLOCK.
        assert!(encode(&compressible(BLOCK)).is_none());
    }

    #[test]
    fn damage_is_refused_with_a_reason() {
        let mut d = zstd::bulk::Decompressor::new().unwrap();
        let len = 3 * FRAME_SPAN;
        let enc = encode(&compressible(len)).unwrap();
        let crc = crc32c::crc32c(&enc);
        let region = padded(enc.clone());
        let mut out = vec![0; len];

        // A frame byte flipped: the crc says so before anything is decompressed.
        let mut bad = region.clone();
        let last = enc.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            verify_encoded(len as u32, crc, &bad),
            Err(DecodeError::PayloadChecksum)
        );
        assert_eq!(
            decode_record(&mut d, len as u32, crc, &bad, &mut out),
            Err(DecodeError::PayloadChecksum)
        );

        // A table length out of bounds names the frame.
        let mut bad = region.clone();
        bad[4..8].copy_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
        let e = read_table(len as u32, &bad).unwrap_err().to_string();
        assert!(e.contains("frame 1 of 3"), "{e}");

        // A table that points past the region is truncated, not a panic.
        let mut bad = region.clone();
        bad[0..4].copy_from_slice(&MAX_FRAME_LEN.to_le_bytes());
        bad[4..8].copy_from_slice(&MAX_FRAME_LEN.to_le_bytes());
        bad[8..12].copy_from_slice(&MAX_FRAME_LEN.to_le_bytes());
        assert!(matches!(
            verify_encoded(len as u32, crc, &bad),
            Err(DecodeError::Truncated { .. })
        ));

        // A frame whose bytes are not zstd (crc not in the way): a decompress error.
        let table = read_table(len as u32, &region).unwrap();
        let mut f = vec![0; FRAME_SPAN];
        let junk = vec![7u8; table[0] as usize];
        assert!(matches!(
            decode_frame(&mut d, &junk, &mut f),
            Err(DecodeError::Decompress(_))
        ));
        // A frame decoded into the wrong length is refused.
        let at = frame_offset(len as u32, &table, 0);
        let mut short = vec![0; FRAME_SPAN - 512];
        assert!(decode_frame(&mut d, &region[at..at + table[0] as usize], &mut short).is_err());

        // An unknown encoding byte.
        assert!(Encoding::decode("chunk entry", 2).is_err());
    }
}
