//! The Rewind source agent: write capture, change tracking, sync and streaming.
//!
//! Not built yet: the agent issue builds it on the wire protocol in `rewind-formats`.
//! Until then the load generator in `benches/` (`rewind-loadgen`) speaks the protocol in its place.
pub use rewind_formats as formats;
