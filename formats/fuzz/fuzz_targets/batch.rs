//! Fuzz target `batch`: parse_records and Batch::decode_records on a decoded BATCH.
//! The work is in `rewind_formats::fuzzing::batch`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_formats::fuzzing::batch(data);
});
