//! `crash [ROUNDS]`: the kill -9 crash test at length. mtd/tests/crash.rs runs `rewind-loadgen
//! run --reconnect --state FILE` against a daemon that is kill -9'd and restarted ROUNDS times,
//! then `rewind-mtd dump` and `rewind-loadgen verify` at several acked points, with both io
//! engines.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use super::settings::Settings;
use super::{progress, tools};

/// Runs the test; its exit code is the bench's.
pub fn run(settings: &Settings, rounds_arg: &str) -> Result<ExitCode> {
    let rounds = rounds_arg
        .parse::<u64>()
        .ok()
        .filter(|&r| r > 0)
        .context("crash: ROUNDS must be a positive number")?;
    progress::log(format!("crash test: {rounds} kill -9 rounds per io engine"));
    // The test runs the rewind-loadgen binary from the same target directory.
    if !tools::cargo(settings, &["build", "-p", "rewind-benches"])? {
        bail!("build failed");
    }
    let status = progress::hidden(|| {
        Command::new("cargo")
            .args([
                "test",
                "-p",
                "rewind-mtd",
                "--test",
                "crash",
                "crash_kill9",
                "--",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env("REWIND_CRASH_ROUNDS", rounds.to_string())
            .current_dir(&settings.root)
            .status()
    })
    .context("running cargo test")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
