//! Fuzz target `segment`: SegmentHeader::decode, peek_chunk, decode_chunk_header, SegmentFooter::decode_trailer/decode_body.
//! The work is in `rewind_formats::fuzzing::segment`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_formats::fuzzing::segment(data);
});
