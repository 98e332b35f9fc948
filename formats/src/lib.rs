//! Byte layouts shared by the Rewind agent and master target.
//!
//! Everything on the data path is a hand-written little-endian layout with a magic, a version and
//! crc32c checksums: wire frames and the messages they carry ([`frame`], [`message`]), a batch's
//! records ([`records`]) and journal segment files ([`segment`]). [`batch`] builds BATCH frames
//! with few copies, and [`magic`] also names the state files that live beside the data path.
//! `FORMATS.md` beside this crate draws every layout as a byte table and says what a reader does
//! with each kind of damage.
//!
//! Decoders never panic on any input: they validate every length and offset before using it,
//! cap every allocation, and message decoders reject trailing bytes. Encoders trust their input
//! (the caller validated it when it came in) and panic only where a value cannot be represented
//! at all (a name longer than its length prefix allows, say); each such case is documented.
#![forbid(unsafe_code)]

pub mod agent_report;
pub mod agent_status;
pub mod batch;
mod bytes;
pub mod dedup;
pub mod dirty_map;
pub mod error;
pub mod frame;
pub mod framed;
pub mod fuzzing;
pub mod hash;
pub mod ltr;
pub mod magic;
pub mod message;
pub mod name;
pub mod policy;
pub mod records;
pub mod segment;
pub mod tag;
pub mod testing;
pub mod verify;
pub mod zstd_context;

pub use error::DecodeError;
pub use frame::*;
pub use magic::*;
pub use message::*;
pub use name::{validate as validate_name_of, validate_name, DiskName, GroupName, NameKind};
pub use records::*;
pub use segment::*;
pub use tag::{TagInfo, TagKind};

use std::fmt;

/// Bytes in a sector: every record offset and length is a multiple of this.
pub const SECTOR: u64 = 512;
/// Bytes in a block: the alignment unit of journal segments (O_DIRECT friendly).
pub const BLOCK: usize = 4096;
/// Largest frame payload a reader accepts; bounds the buffer a receiver allocates per frame.
pub const MAX_FRAME_PAYLOAD: usize = 64 << 20;
/// Largest single record (one captured write), in bytes.
pub const MAX_RECORD_LEN: u32 = 8 << 20;
/// Most records one batch (and one records chunk) may hold.
pub const MAX_BATCH_RECORDS: u32 = 1 << 20;
/// Largest decompressed record payload of one batch; bounds the decompression buffer.
pub const MAX_BATCH_UNCOMPRESSED: u32 = 64 << 20;
/// Longest group, disk, agent or tag name, in bytes (u8 length prefix on the wire and on disk).
pub const MAX_NAME_LEN: usize = 255;
/// Longest free-text string (an error message, a control argument), in bytes (u16 length prefix).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A sequence number: the position of a record in its protection group's stream.
///
/// Seqs are global across the group's disks (so a seq names a point consistent across disks);
/// the first record of a group is seq 1, and seq 0 means "nothing yet".
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Seq {
    fn from(v: u64) -> Seq {
        Seq(v)
    }
}

impl From<Seq> for u64 {
    fn from(s: Seq) -> u64 {
        s.0
    }
}

/// Rounds `n` up to a multiple of [`BLOCK`], or `None` on overflow.
pub fn round_up_block(n: u64) -> Option<u64> {
    let b = BLOCK as u64;
    n.checked_add(b - 1).map(|v| v / b * b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_displays_as_number_and_serialises_transparently() {
        assert_eq!(Seq(42).to_string(), "42");
        assert_eq!(serde_json::to_string(&Seq(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Seq>("9").unwrap(), Seq(9));
        assert!(Seq(1) < Seq(2));
    }

    #[test]
    fn round_up_block_works_and_never_overflows() {
        assert_eq!(round_up_block(0), Some(0));
        assert_eq!(round_up_block(1), Some(4096));
        assert_eq!(round_up_block(4096), Some(4096));
        assert_eq!(round_up_block(4097), Some(8192));
        assert_eq!(round_up_block(u64::MAX), None);
    }
}
