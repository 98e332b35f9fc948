//! Replays the committed fuzz corpus of `mtd/fuzz` (its seeds, and any crash artifacts) through the same
//! code the fuzz targets run (`rewind_mtd::nbd::fuzzing`, `rewind_mtd::control::fuzzing`,
//! `rewind_mtd::plan::fuzzing`), so
//! every input the fuzzer kept, and every crash it found, is checked by plain `cargo test`.

mod common;

use std::path::{Path, PathBuf};

use rewind_mtd::nbd::fuzzing::Harness;

const TARGETS: &[&str] = &["nbd_handshake", "nbd_request", "control_body", "plan_toml"];

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

fn replay(target: &str, h: &Harness, dir: &Path) -> usize {
    let inputs = files(dir);
    for p in &inputs {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match target {
            "nbd_handshake" => h.handshake(&data),
            "nbd_request" => h.requests(&data),
            "control_body" => rewind_mtd::control::fuzzing::body(&data),
            "plan_toml" => rewind_mtd::plan::fuzzing::plan(&data),
            other => panic!("no fuzz target {other}"),
        }));
        assert!(r.is_ok(), "target {target} panicked on {}", p.display());
    }
    inputs.len()
}

#[test]
fn corpus_and_artifacts_replay_without_panics() {
    let tmp = common::tempdir();
    let h = Harness::new(&tmp.path().join("data"));
    for name in TARGETS {
        let n = replay(name, &h, &fuzz_dir().join("corpus").join(name));
        assert!(n > 0, "no corpus files for fuzz target {name}");
        let n = replay(name, &h, &fuzz_dir().join("seeds").join(name));
        assert!(n > 0, "no seeds for fuzz target {name}");
        replay(name, &h, &fuzz_dir().join("artifacts").join(name));
    }
}

#[test]
fn every_fuzz_target_is_replayed() {
    let on_disk: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let mut replayed: Vec<String> = TARGETS.iter().map(|n| n.to_string()).collect();
    replayed.sort();
    let mut on_disk = on_disk;
    on_disk.sort();
    assert_eq!(on_disk, replayed);
}

/// The plan seed is a plan the parser accepts (a parser that refused everything would replay
/// "without panics" too).
#[test]
fn the_plan_seed_parses() {
    let text = std::fs::read_to_string(fuzz_dir().join("seeds/plan_toml/example.toml")).unwrap();
    rewind_mtd::plan::Plan::parse(Path::new("example.toml"), &text).unwrap();
}

/// The seeds reach what they are for: a GO on `g/d` negotiates, a read runs. (A harness that
/// refused everything would replay "without panics" too.)
#[test]
fn the_harness_serves_g_d() {
    let tmp = common::tempdir();
    let h = Harness::new(&tmp.path().join("data"));
    let seed = |f: &str| std::fs::read(fuzz_dir().join("seeds/nbd_handshake").join(f)).unwrap();
    assert!(h.negotiates(&seed("seed-go")));
    assert!(h.negotiates(&seed("seed-export-name")));
    assert!(!h.negotiates(&seed("seed-go-missing")));
    assert!(!h.negotiates(&seed("seed-list-abort")));
}
