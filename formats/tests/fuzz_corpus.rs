//! Replays the committed fuzz corpus (and any crash artifacts) through the same code the fuzz
//! targets run (`rewind_formats::fuzzing`), so that every input the fuzzer ever kept, and every
//! crash it ever found, is checked by plain `cargo test` without the fuzzer.

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("frame", rewind_formats::fuzzing::frame),
    ("batch", rewind_formats::fuzzing::batch),
    ("segment", rewind_formats::fuzzing::segment),
    ("policy", rewind_formats::fuzzing::policy),
    ("agent_report", rewind_formats::fuzzing::agent_report),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files directly in `dir` (none if it does not exist), sorted for a stable order.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("read corpus dir").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, run: Target, dir: &Path) -> usize {
    let inputs = files(dir);
    for p in &inputs {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "target {target} panicked on {}", p.display());
    }
    inputs.len()
}

#[test]
fn corpus_replays_without_panics() {
    for (name, run) in TARGETS {
        let n = replay(name, *run, &fuzz_dir().join("corpus").join(name));
        assert!(n > 0, "no corpus files for fuzz target {name}");
    }
}

/// The handcrafted seeds of the JSON targets are accepted (a decoder that refused everything
/// would replay "without panics" too), and replay like the corpus.
#[test]
fn json_seeds_are_accepted() {
    for name in ["policy", "agent_report"] {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for p in seeds {
            let text = std::fs::read_to_string(&p).unwrap();
            let ok = match name {
                "policy" => rewind_formats::policy::Policy::from_control_arg(text.trim()).is_ok(),
                _ => rewind_formats::agent_report::AgentReport::parse(text.trim()).is_ok(),
            };
            assert!(ok, "seed {} is refused", p.display());
        }
    }
}

#[test]
fn artifacts_replay_without_panics() {
    for (name, run) in TARGETS {
        replay(name, *run, &fuzz_dir().join("artifacts").join(name));
    }
}

#[test]
fn every_fuzz_target_is_replayed() {
    let on_disk: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let mut replayed: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    replayed.sort();
    assert_eq!(on_disk, replayed);
}
