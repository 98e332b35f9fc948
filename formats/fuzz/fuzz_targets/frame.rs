//! Fuzz target `frame`: decode_frame and Message::decode.
//! The work is in `rewind_formats::fuzzing::frame`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_formats::fuzzing::frame(data);
});
