//! Fuzz target `control_body`: the control API's JSON request bodies.
//! The work is in `rewind_mtd::control::fuzzing::body`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_mtd::control::fuzzing::body(data);
});
