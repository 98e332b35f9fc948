//! Fuzz target `nbd_request`: NBD transmission request headers (decode, validate, run).
//! The work is in `rewind_mtd::nbd::fuzzing::request`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_mtd::nbd::fuzzing::request(data);
});
