//! Fuzz target `agent_config`: the agent's settings file, parsed and validated.
//! The work is in `rewind_agent::config::fuzzing::config`, which the corpus replay test also runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rewind_agent::config::fuzzing::config(data);
});
