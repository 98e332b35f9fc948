//! Fuzz target `plan_toml`: a recovery plan's TOML, parsed and validated.
//! The work is in `rewind_mtd::plan::fuzzing::plan`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_mtd::plan::fuzzing::plan(data);
});
