//! BATCH frames built with as few copies as possible.
//!
//! `Message::Batch(Batch::build(..)).to_frame()` copies the compressed bytes twice and allocates
//! three buffers per batch; at a few GB/s that makes the sender the bottleneck. The builders here
//! write the same layout ([`crate::message`], [`crate::records`]; the tests decode their frames
//! with this crate's decoders) with fewer copies:
//!
//! - [`BatchBuilder`] with [`Compression::Zstd`]: records are encoded into one reused buffer and
//!   compressed straight into the frame buffer behind a header filled in afterwards.
//! - [`BatchBuilder`] with [`Compression::Store`]: records are written straight into the frame as
//!   a zstd frame of raw (stored) blocks, RFC 8878 section 3.1.1.2. That is what zstd itself
//!   emits for incompressible data, so the target does the same work, while the sender skips
//!   zstd's futile search and two copies: one copy per byte instead of three.
//! - [`PartsBuilder`]: the stored layout without copying large record data at all; the frame is
//!   a list of slices for one vectored write.

mod builder;
mod parts;
mod stored;

use std::fmt;
use std::str::FromStr;

pub use builder::BatchBuilder;
pub use parts::{PartsBuilder, PartsFrame};
pub use stored::stored_frame;

use crate::frame::FRAME_HEADER_LEN;
use crate::message::BATCH_FIXED_LEN;
use crate::Seq;

/// How record payloads are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zstd at this level (as [`crate::Batch::build`] takes it: 0 is zstd's default).
    Zstd(i32),
    /// A zstd frame of stored (raw) blocks: no compression, minimal CPU.
    Store,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "store" => Ok(Compression::Store),
            "zstd" => Ok(Compression::Zstd(1)),
            _ => match s.strip_prefix("zstd:").map(str::parse) {
                Some(Ok(level)) => Ok(Compression::Zstd(level)),
                _ => Err(format!(
                    "compression {s:?}: expected zstd, zstd:LEVEL or store"
                )),
            },
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Store => f.write_str("store"),
        }
    }
}

/// Bytes of a BATCH frame before its compressed records: frame header, group name, fixed fields.
fn prefix_len(group: &str) -> usize {
    FRAME_HEADER_LEN + 1 + group.len() + BATCH_FIXED_LEN
}

/// The BATCH fields of one finished batch, written into the slot the builders left for them.
struct Fields<'a> {
    group: &'a str,
    generation: u64,
    first_seq: Seq,
    record_count: u32,
    timestamp_ms: u64,
    uncompressed_len: u32,
    compressed_len: u32,
}

impl Fields<'_> {
    /// Writes the fields at `frame[FRAME_HEADER_LEN..prefix_len(group)]`, in the order of the
    /// BATCH layout ([`crate::message`]); returns where they end.
    fn write(&self, frame: &mut [u8]) -> usize {
        let mut w = FRAME_HEADER_LEN;
        let mut put = |bytes: &[u8]| {
            frame[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(&[self.group.len() as u8]);
        put(self.group.as_bytes());
        put(&self.generation.to_le_bytes());
        put(&self.first_seq.0.to_le_bytes());
        put(&self.record_count.to_le_bytes());
        put(&self.timestamp_ms.to_le_bytes());
        put(&self.uncompressed_len.to_le_bytes());
        put(&self.compressed_len.to_le_bytes());
        debug_assert_eq!(w, prefix_len(self.group));
        w
    }
}

/// Checks what [`crate::Batch::build`] checks of a group name: it must fit its u8 length.
fn check_group(group: &str) {
    assert!(group.len() <= crate::MAX_NAME_LEN, "group name too long");
}

/// Checks a finished batch against the caps every reader enforces: a batch over them would be
/// refused, so building one is a bug (as in [`crate::Batch::build`]).
fn check_caps(record_count: u32, uncompressed_len: usize) {
    assert!(record_count > 0, "empty batch");
    assert!(
        record_count <= crate::MAX_BATCH_RECORDS,
        "{record_count} records in one batch, over MAX_BATCH_RECORDS"
    );
    assert!(
        uncompressed_len <= crate::MAX_BATCH_UNCOMPRESSED as usize,
        "batch payload of {uncompressed_len} bytes, over MAX_BATCH_UNCOMPRESSED"
    );
}
