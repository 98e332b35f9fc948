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
