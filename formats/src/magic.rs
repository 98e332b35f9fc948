//! Every magic number and format version, in one place, and the names of the state files that
//! keep the agent's and the target's state beside the data path.
//!
//! NEVER CHANGE THESE. Files written with them exist on disks and in `tests/vectors/`, and peers
//! running older builds speak them. A layout change gets a new version number (and the readers
//! keep reading the old one); a new layout gets a new magic. Magics are ASCII so that they stand
//! out in a hex dump; each is stored as the little-endian integer made of those bytes, so the
//! bytes appear on disk in reading order.

/// Wire frame header magic: the bytes `RWF1`.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RWF1");
/// Wire frame layout version (header and every message payload) that this build writes.
/// Version 2 added the agent's software version to HELLO; version 3 the dedup window to HELLO
/// and WELCOME (and with it deduplicated data records, see [`crate::dedup`]); version 4 a
/// per-group epoch to HELLO (which relay's session of a group is the current one); version 5 a
/// flags byte to HELLO and WELCOME (framed records asked and granted, see [`crate::framed`]);
/// nothing else changed.
pub const FRAME_VERSION: u16 = 5;
/// The oldest wire frame version this build still reads (and answers in, for older agents).
pub const FRAME_VERSION_MIN: u16 = 1;

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

// State files: the files beside the data path that keep a part's state across restarts. Their
// layouts are declared here (and drawn in FORMATS.md, "State files") so that one place lists
// every byte layout Rewind keeps on disk; the code that reads and writes them lives with its part.
// The JSON files carry no magic: they are found by name, and a field added later has a serde
// default so that older files still read.

/// Agent dirty-region map header magic (`STATE_DIR/GROUP.dirty`): the bytes `RWDIRTY1`. The
/// trailing `1` is the layout version; a new layout gets a new magic (`RWDIRTY2`), and a map an
/// agent cannot read is treated as "every region dirty" (a full compare, never a missed change).
pub const DIRTY_MAP_MAGIC: u64 = u64::from_le_bytes(*b"RWDIRTY1");
/// Extension of the agent's dirty-region map, named after its group (`GROUP.dirty`).
pub const DIRTY_MAP_EXTENSION: &str = "dirty";

/// Agent status file in its state dir, JSON, rewritten a few times a second (no version field:
/// fields are only ever added, with serde defaults).
pub const AGENT_STATUS_FILE: &str = "status.json";

/// Group manifest in the target's group directory (`DATA_DIR/GROUP/group.json`), JSON.
pub const MANIFEST_FILE: &str = "group.json";
/// Group manifest layout version (its `version` field); a reader refuses any other value.
pub const MANIFEST_VERSION: u32 = 1;

/// Directory of the target's writable overlays (`DATA_DIR/overlays/NAME/`).
pub const OVERLAYS_DIR: &str = "overlays";
/// An overlay's description (group, disk, point, size), JSON.
pub const OVERLAY_META_FILE: &str = "overlay.json";
/// An overlay's written blocks: a sparse file of the disk's size, blocks at their own offsets.
pub const OVERLAY_DATA_FILE: &str = "data.img";
/// An overlay's block bitmap: no header, one bit per [`OVERLAY_BITMAP_BLOCK`] of the disk.
pub const OVERLAY_BITMAP_FILE: &str = "bitmap";
/// Bytes of disk per overlay bitmap bit.
pub const OVERLAY_BITMAP_BLOCK: u64 = 4096;

/// Directory of the target's failover state, one JSON file per group
/// (`DATA_DIR/failover/GROUP.json`).
pub const FAILOVER_DIR: &str = "failover";
/// Extension of a group's failover state file.
pub const FAILOVER_EXTENSION: &str = "json";

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
        assert_eq!(&DIRTY_MAP_MAGIC.to_le_bytes(), b"RWDIRTY1");
    }

    #[test]
    fn magic_values_are_pinned() {
        // If one of these fails, a magic was changed: that breaks every existing file and peer.
        assert_eq!(FRAME_MAGIC, 0x3146_5752);
        assert_eq!(SEGMENT_MAGIC, 0x3130_4745_534a_5752);
        assert_eq!(CHUNK_MAGIC, 0x434a_5752);
        assert_eq!(FOOTER_MAGIC, 0x464a_5752);
        assert_eq!(TRAILER_MAGIC, 0x4c49_4152_544a_5752);
        assert_eq!(DIRTY_MAP_MAGIC, 0x3159_5452_4944_5752);
        assert_eq!(
            (
                FRAME_VERSION,
                SEGMENT_VERSION,
                CHUNK_VERSION,
                FOOTER_VERSION,
                TRAILER_VERSION
            ),
            (5, 1, 1, 1, 1)
        );
    }
}
