//! Every magic number and format version, in one place.
//!
//! NEVER CHANGE THESE. Files written with them exist on disks and in `tests/vectors/`, and peers
//! running older builds speak them. A layout change gets a new version number (and the readers
//! keep reading the old one); a new layout gets a new magic. Magics are ASCII so that they stand
//! out in a hex dump; each is stored as the little-endian integer made of those bytes, so the
//! bytes appear on disk in reading order.

/// Wire frame header magic: the bytes `RWF1`.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RWF1");
/// Wire frame layout version (header and every message payload).
pub const FRAME_VERSION: u16 = 1;

/// Journal segment header magic: the bytes `RWJSEG01`.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"RWJSEG01");
/// Journal segment header layout version.
pub const SEGMENT_VERSION: u16 = 1;

/// Journal chunk prefix magic: the bytes `RWJC`.
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"RWJC");
/// Journal chunk layout version (prefix, record entries, tag entry).
pub const CHUNK_VERSION: u16 = 1;

/// Sealed segment footer body magic: the bytes `RWJF`.
pub const FOOTER_MAGIC: u32 = u32::from_le_bytes(*b"RWJF");
/// Sealed segment footer body layout version.
pub const FOOTER_VERSION: u16 = 1;

/// Sealed segment trailer magic (the last 64 bytes of a sealed segment): the bytes `RWJTRAIL`.
pub const TRAILER_MAGIC: u64 = u64::from_le_bytes(*b"RWJTRAIL");
/// Sealed segment trailer layout version.
pub const TRAILER_VERSION: u16 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_are_their_ascii_bytes_on_disk() {
        assert_eq!(&FRAME_MAGIC.to_le_bytes(), b"RWF1");
        assert_eq!(&SEGMENT_MAGIC.to_le_bytes(), b"RWJSEG01");
        assert_eq!(&CHUNK_MAGIC.to_le_bytes(), b"RWJC");
        assert_eq!(&FOOTER_MAGIC.to_le_bytes(), b"RWJF");
        assert_eq!(&TRAILER_MAGIC.to_le_bytes(), b"RWJTRAIL");
    }

    #[test]
    fn magic_values_are_pinned() {
        // If one of these fails, a magic was changed: that breaks every existing file and peer.
        assert_eq!(FRAME_MAGIC, 0x3146_5752);
        assert_eq!(SEGMENT_MAGIC, 0x3130_4745_534a_5752);
        assert_eq!(CHUNK_MAGIC, 0x434a_5752);
        assert_eq!(FOOTER_MAGIC, 0x464a_5752);
        assert_eq!(TRAILER_MAGIC, 0x4c49_4152_544a_5752);
        assert_eq!(
            (
                FRAME_VERSION,
                SEGMENT_VERSION,
                CHUNK_VERSION,
                FOOTER_VERSION,
                TRAILER_VERSION
            ),
            (1, 1, 1, 1, 1)
        );
    }
}
