//! What the fuzz target `plan_toml` (mtd/fuzz) does with its bytes, shared with the corpus replay
//! test (`mtd/tests/fuzz_corpus.rs`): a recovery plan's text through [`Plan::parse`], which
//! validates names, boot commands, health checks and timeouts. An error is the expected answer
//! to bad input; a panic is a bug.

use std::path::Path;

use super::Plan;

/// Target `plan_toml`.
pub fn plan(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Plan::parse(Path::new("fuzz.toml"), text);
    }
}
