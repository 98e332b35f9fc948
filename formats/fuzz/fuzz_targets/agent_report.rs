//! Fuzz target `agent_report`: a CONTROL frame's JSON `arg` of that kind, decoded and checked.
//! The work is in `rewind_formats::fuzzing::agent_report`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_formats::fuzzing::agent_report(data);
});
