//! Benches that are a test of the suite run at length (`netfault`, `oracle`): build the
//! binaries the test runs, then `cargo test` it with its length in an environment variable;
//! the test prints its own report and bar lines, and its exit code is the bench's.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use super::settings::Settings;
use super::{progress, tools};

/// `cargo test -p rewind-benches --test FILE NAME` with `var=value`, after building the agent
/// and the daemon (the test runs them from the same target directory).
pub fn run(
    settings: &Settings,
    file: &str,
    name: &str,
    var: &str,
    value: &str,
) -> Result<ExitCode> {
    if !tools::cargo(
        settings,
        &["build", "-p", "rewind-agent", "-p", "rewind-mtd"],
    )? {
        bail!("build failed");
    }
    let status = progress::hidden(|| {
        Command::new("cargo")
            .args(["test", "-p", "rewind-benches", "--test", file, name, "--"])
            .args(["--nocapture", "--test-threads=1"])
            .env(var, value)
            .current_dir(&settings.root)
            .status()
    })
    .context("running cargo test")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// A bench's MINUTES argument: a number of minutes in (0, 10000].
pub fn minutes(bench: &str, arg: &str) -> Result<f64> {
    arg.parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m > 0.0 && *m <= 10_000.0)
        .with_context(|| {
            format!("{bench}: MINUTES must be a number of minutes in (0, 10000], not {arg:?}")
        })
}
