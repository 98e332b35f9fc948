//! Replaying a cargo-fuzz project's kept inputs through the code its targets run, so every input
//! the fuzzer kept, and every crash it found, is checked by plain `cargo test`.

use std::path::{Path, PathBuf};

/// Files directly in `dir` (none if it does not exist), sorted for a stable order.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("read a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs every file of `dir` through `run`, failing on a panic with the file's name; returns
/// how many there were.
pub fn replay(target: &str, dir: &Path, run: impl Fn(&[u8])) -> usize {
    let inputs = files(dir);
    for p in &inputs {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(
            r.is_ok(),
            "fuzz target {target} panicked on {}",
            p.display()
        );
    }
    inputs.len()
}

/// The targets a cargo-fuzz project has (`fuzz_targets/*.rs`), sorted.
pub fn targets(fuzz_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = files(&fuzz_dir.join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    v.sort();
    v
}
