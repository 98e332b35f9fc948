//! Where the binaries a test runs are. Cargo gives a test the paths of its own crate's binaries
//! only (`CARGO_BIN_EXE_*`), and those are in the same directory as every other binary of the
//! workspace: the test executable's `../` (target/debug/deps/..). So every binary, the own
//! crate's and the other's, is found there.

use std::path::{Path, PathBuf};

/// A binary of this workspace (`rewind-mtd`, `rewind`, `rewind-agent`, `rewind-loadgen`) in the
/// target directory of the running test. Cargo builds a crate's own binaries for its tests; the
/// other crate's must be built already (`cargo test --workspace` or `cargo build --workspace`
/// builds them all; scripts/test.sh does).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: build the workspace first (`cargo build --workspace`, or \
         `cargo build -p CRATE` for the crate that has it)",
        p.display()
    );
    p
}

/// fsx (file system exerciser), on PATH or in cargo's bin directory (`cargo install fsx`).
pub fn fsx_bin() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("fsx")).collect())
        .unwrap_or_default();
    candidates.extend(home.map(|h| h.join("bin/fsx")));
    candidates.into_iter().find(|p| p.is_file())
}
