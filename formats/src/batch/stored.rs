//! zstd frames of stored (raw) blocks, RFC 8878 section 3.1.1: a valid zstd frame that any
//! decoder reads back, written without compressing.

/// zstd frame magic (RFC 8878 3.1.1).
const MAGIC: u32 = 0xFD2F_B528;
/// Frame header descriptor: 4-byte content size (flag 2), single segment (no window
/// descriptor), no checksum, no dictionary.
const FHD_SINGLE_FCS4: u8 = (2 << 6) | (1 << 5);
/// Magic, descriptor, 4-byte content size.
pub(super) const FRAME_HEADER_LEN: usize = 4 + 1 + 4;
/// Block header: 3 bytes, little-endian: last flag, type (0 = raw), size.
pub(super) const BLOCK_HEADER_LEN: usize = 3;
/// Largest block (Block_Maximum_Size).
pub(super) const MAX_BLOCK: usize = 128 << 10;

/// `raw` as one zstd frame of stored blocks, without compressing: for data that does not
/// compress, what zstd would make of it at a fraction of the CPU.
pub fn stored_frame(raw: &[u8]) -> Vec<u8> {
    let blocks = raw.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = vec![0u8; FRAME_HEADER_LEN + blocks * BLOCK_HEADER_LEN + raw.len()];
    put_frame_header(&mut out, 0, raw.len() as u32);
    let mut at = FRAME_HEADER_LEN;
    for i in 0..blocks {
        let chunk = &raw[(i * MAX_BLOCK).min(raw.len())..((i + 1) * MAX_BLOCK).min(raw.len())];
        put_block_header(&mut out, at, i + 1 == blocks, chunk.len());
        at += BLOCK_HEADER_LEN;
        out[at..at + chunk.len()].copy_from_slice(chunk);
        at += chunk.len();
    }
    out
}

/// Writes the zstd frame header for `content_len` bytes of content at `frame[at..]`.
pub(super) fn put_frame_header(frame: &mut [u8], at: usize, content_len: u32) {
    frame[at..at + 4].copy_from_slice(&MAGIC.to_le_bytes());
    frame[at + 4] = FHD_SINGLE_FCS4;
    frame[at + 5..at + FRAME_HEADER_LEN].copy_from_slice(&content_len.to_le_bytes());
}

/// Writes a raw block's header at `frame[at..]`.
pub(super) fn put_block_header(frame: &mut [u8], at: usize, last: bool, len: usize) {
    // bit 0: last block; bits 1-2: type 0 (raw); bits 3..24: size.
    let v = (len as u32) << 3 | u32::from(last);
    frame[at..at + BLOCK_HEADER_LEN].copy_from_slice(&v.to_le_bytes()[..BLOCK_HEADER_LEN]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_frame_decodes_to_its_bytes() {
        for len in [
            0,
            1,
            super::MAX_BLOCK,
            super::MAX_BLOCK + 1,
            3 * super::MAX_BLOCK + 7,
        ] {
            let raw: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let frame = super::stored_frame(&raw);
            assert_eq!(
                zstd::bulk::decompress(&frame, len).unwrap(),
                raw,
                "{len} bytes"
            );
        }
    }
}
