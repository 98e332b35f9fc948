//! What every bench reads from its environment, and the scratch directory it works in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::cleanup;

/// The environment of one bench run (`scripts/bench.sh` passes it through unchanged).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The source tree (cargo builds run there, scripts/ is found there).
    pub root: PathBuf,
    /// `BENCH_RUNS` (default 3): runs of each measurement; the median is reported.
    pub runs: usize,
    /// Whether `BENCH_RUNS` was given (a bench may have a default of its own, [`Settings::runs_or`]).
    pub runs_given: bool,
    /// `BENCH_TMP`: where the scratch directory goes.
    pub tmp_base: PathBuf,
    /// `BENCH_RAND_SECONDS`: the time cap of random-write runs (fio and the daemon alike).
    pub rand_seconds: u64,
    /// `CARGO_TARGET_DIR` (default `ROOT/target`): where the release binaries are.
    pub target_dir: PathBuf,
}

impl Settings {
    /// `BENCH_RUNS` if it was given, else `default`.
    pub fn runs_or(&self, default: usize) -> usize {
        if self.runs_given {
            self.runs
        } else {
            default
        }
    }

    /// A release binary of the workspace.
    pub fn release_bin(&self, name: &str) -> PathBuf {
        self.target_dir.join("release").join(name)
    }

    /// Creates the scratch directory `BENCH_TMP/rewind-bench.XXXXXX`, removed on exit.
    pub fn make_workdir(&self) -> Result<PathBuf> {
        make_workdir(&self.tmp_base, "rewind-bench")
    }
}

/// Creates `BASE/PREFIX.XXXXXX` (as `mktemp -d`) and has it removed on exit.
pub fn make_workdir(base: &Path, prefix: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}."))
        .rand_bytes(6)
        .tempdir_in(base)
        .with_context(|| format!("creating a scratch directory in {}", base.display()))?
        .keep();
    cleanup::set_workdir(&dir);
    Ok(dir)
}

/// A size as the benches take it: a whole number with an optional binary unit (`256MiB`, `1g`).
pub fn to_bytes(s: &str) -> Result<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let Ok(n) = n.parse::<u64>() else {
        bail!("bad size {s}");
    };
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => bail!("bad size unit in {s} (use KiB, MiB, GiB)"),
    };
    n.checked_shl(shift)
        .filter(|b| b >> shift == n)
        .with_context(|| format!("bad size {s}"))
}

/// A size of at least `min` bytes in whole MiB, as the apply and views benches need.
pub fn whole_mib_size(s: &str, min_mib: u64) -> Result<u64> {
    let bytes = to_bytes(s)?;
    if bytes < min_mib << 20 {
        bail!("SIZE must be at least {min_mib}MiB");
    }
    if bytes % (1 << 20) != 0 {
        bail!("SIZE must be a multiple of 1MiB");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_the_script_took_them() {
        assert_eq!(to_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(to_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(to_bytes("4096").unwrap(), 4096);
        assert_eq!(to_bytes("2KIB").unwrap(), 2048);
        assert!(to_bytes("1.5GiB").is_err());
        assert!(to_bytes("MiB").is_err());
        assert!(to_bytes("1MB").is_err());
        assert!(whole_mib_size("8MiB", 16).is_err());
        assert!(whole_mib_size("17000KiB", 16).is_err());
        assert_eq!(whole_mib_size("64MiB", 64).unwrap(), 64 << 20);
    }
}
