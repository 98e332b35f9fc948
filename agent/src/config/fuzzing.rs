//! What the fuzz target `agent_config` (agent/fuzz) does with its bytes, shared with the corpus
//! replay test (`agent/tests/fuzz_corpus.rs`): a settings file's text through the TOML parser and
//! on into validated settings, where every name and number from the file is checked. An error
//! is the expected answer to bad input; a panic is a bug.

use std::path::Path;

use super::file::RunOptions;

/// Target `agent_config`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(opts) = RunOptions::parse(text, Path::new("fuzz.toml")) {
        let _ = opts.into_config(|| Ok("fuzz-host".to_string()));
    }
}
