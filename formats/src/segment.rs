//! Journal segment files: where the master target keeps a group's records.
//!
//! ```text
//! +------------------+  offset 0
//! | segment header   |  one BLOCK                      (header.rs)
//! +------------------+  BLOCK
//! | chunk            |  records chunk or tag chunk,    (chunk.rs)
//! | chunk            |  each a multiple of BLOCK, starting BLOCK-aligned
//! | ...              |
//! +------------------+  footer_offset                   (only once sealed)
//! | footer body      |  chunk list, tags, sorted extent index (footer.rs)
//! | zero padding     |
//! | trailer          |  last 64 bytes of the file
//! +------------------+  file length, a multiple of BLOCK
//! ```
//!
//! An open segment is appended chunk by chunk; its tail may be torn by a crash. A reader that
//! finds no valid trailer walks the chunks from the header on ([`peek_chunk`], then
//! [`decode_chunk_header`] and [`verify_record_data`]) and stops at the first that does not
//! verify. Sealing writes the footer so that a reader can load the extent index in one read.

mod chunk;
pub mod encoding;
mod footer;
mod header;

pub use chunk::*;
pub use encoding::Encoding;
pub use footer::*;
pub use header::*;
