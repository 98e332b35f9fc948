//! The agent's dirty-region map file (`STATE_DIR/GROUP.dirty`): which regions of a group's disks
//! may differ from the target. The agent owns its logic (set before a write, clear after the
//! ACK); this module owns its bytes.
//!
//! | off      | size   | field       | notes                                           |
//! |---------:|-------:|-------------|-------------------------------------------------|
//! |        0 |      8 | magic       | `b"RWDIRTY1"` ([`DIRTY_MAP_MAGIC`])             |
//! |        8 |      4 | region_size | bytes of disk per bit (1 MiB today)             |
//! |       12 |      4 | disk_count  | n                                               |
//! |       16 |  8 x n | disk sizes  | u64 bytes each, in the group's disk order       |
//! |  16 + 8n |      4 | header_crc  | crc32c of every byte before it                  |
//! |  20 + 8n |      - | bitmap      | per disk, ceil(regions / 8) bytes (below)       |
//!
//! In a disk's bitmap bytes, region r is bit r % 8 (least significant first) of byte r / 8.
//!
//! A reader compares the whole header with the one it would write for its disks: any difference
//! (other disks, a resize, damage, another version) means "every region dirty".

use crate::DIRTY_MAP_MAGIC;

/// The header for disks of `disk_sizes` at `region_size` bytes per bit.
///
/// # Panics
/// If there are more than `u32::MAX` disks (a group has at most a few dozen).
pub fn encode_header(region_size: u32, disk_sizes: &[u64]) -> Vec<u8> {
    let n = u32::try_from(disk_sizes.len()).expect("disk count fits a u32");
    let mut h = Vec::with_capacity(20 + 8 * disk_sizes.len());
    h.extend_from_slice(&DIRTY_MAP_MAGIC.to_le_bytes());
    h.extend_from_slice(&region_size.to_le_bytes());
    h.extend_from_slice(&n.to_le_bytes());
    for s in disk_sizes {
        h.extend_from_slice(&s.to_le_bytes());
    }
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}
