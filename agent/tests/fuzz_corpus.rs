//! Replays the committed fuzz corpus of `agent/fuzz` (its seeds, and any crash artifacts) through
//! the code the fuzz target runs (`rewind_agent::config::fuzzing`), so every input the fuzzer
//! kept, and every crash it found, is checked by plain `cargo test`.

use std::path::{Path, PathBuf};

use rewind_agent::config::file::RunOptions;
use rewind_agent::config::fuzzing;
use rewind_benches::harness::corpus;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn corpus_seeds_and_artifacts_replay_without_panics() {
    for kind in ["corpus", "seeds"] {
        let n = corpus::replay(
            "agent_config",
            &fuzz_dir().join(kind).join("agent_config"),
            fuzzing::config,
        );
        assert!(n > 0, "no {kind} files for fuzz target agent_config");
    }
    corpus::replay(
        "agent_config",
        &fuzz_dir().join("artifacts/agent_config"),
        fuzzing::config,
    );
    assert_eq!(corpus::targets(&fuzz_dir()), ["agent_config"]);
}

/// The seed is a settings file that makes settings (a parser that refused everything would
/// replay "without panics" too).
#[test]
fn the_seed_makes_settings() {
    let seed = fuzz_dir().join("seeds/agent_config/example.toml");
    let text = std::fs::read_to_string(&seed).unwrap();
    let opts = RunOptions::parse(&text, &seed).unwrap();
    opts.into_config(|| Ok("host".into())).unwrap();
}
