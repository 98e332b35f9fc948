//! The sector-header oracle ("points are what they claim"): a workload writes blocks whose
//! header holds a checksum, the write's seq, the block's offset and the time; any view of the
//! disk at a point must then be a prefix of the writes: every block the newest write at or
//! before the point that covers it, nothing newer (blksnap's `corrupt` test method).
//!
//! - [`sector`]: the block layout, written and parsed.
//! - [`history`]: the writes in order; the disk after any prefix of them.
//! - [`mod@check`]: one view against the history.
//! - [`workload`]: the writer on a protected device.

pub mod check;
pub mod history;
pub mod sector;
pub mod workload;

pub use check::{check, Verdict};
pub use history::{History, Write};
