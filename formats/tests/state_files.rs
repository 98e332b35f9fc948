//! Pins the layouts of the state files declared in `magic.rs` (FORMATS.md, "State files"): their
//! names, magics and versions, and the dirty-region map header byte for byte. The JSON files'
//! fields are pinned by their owners' tests; this pins where they are and what version they say.

use rewind_formats::dirty_map;
use rewind_formats::magic::*;

#[test]
fn state_file_names_and_versions_are_pinned() {
    // Renaming one of these orphans every existing file of that kind.
    assert_eq!(DIRTY_MAP_EXTENSION, "dirty");
    assert_eq!(AGENT_STATUS_FILE, "status.json");
    assert_eq!((MANIFEST_FILE, MANIFEST_VERSION), ("group.json", 1));
    assert_eq!(
        (
            OVERLAYS_DIR,
            OVERLAY_META_FILE,
            OVERLAY_DATA_FILE,
            OVERLAY_BITMAP_FILE
        ),
        ("overlays", "overlay.json", "data.img", "bitmap")
    );
    assert_eq!(OVERLAY_BITMAP_BLOCK, 4096);
    assert_eq!((FAILOVER_DIR, FAILOVER_EXTENSION), ("failover", "json"));
}

#[test]
fn dirty_map_header_is_pinned() {
    let h = dirty_map::encode_header(1 << 20, &[1 << 30, 4096]);
    let mut want = Vec::new();
    want.extend_from_slice(b"RWDIRTY1");
    want.extend_from_slice(&[0x00, 0x00, 0x10, 0x00]); // region_size 1 MiB
    want.extend_from_slice(&[2, 0, 0, 0]); // 2 disks
    want.extend_from_slice(&[0, 0, 0, 0x40, 0, 0, 0, 0]); // 1 GiB
    want.extend_from_slice(&[0, 0x10, 0, 0, 0, 0, 0, 0]); // 4096
    want.extend_from_slice(&PINNED_CRC.to_le_bytes());
    assert_eq!(h, want);
    assert_eq!(
        u32::from_le_bytes(h[h.len() - 4..].try_into().unwrap()),
        crc32c::crc32c(&h[..h.len() - 4])
    );
}

/// crc32c of the 32 header bytes above, as version 1 writes them.
const PINNED_CRC: u32 = 0x6734_6825;
