//! `crash [ROUNDS]`: the kill -9 crash test at length. mtd/tests/crash.rs runs `rewind-loadgen
//! run --reconnect --state FILE` against a daemon that is kill -9'd and restarted ROUNDS times,
//! then `rewind-mtd dump` and `rewind-loadgen verify` at several acked points, with both io
//! engines.
//!
//! `crash-agent [ROUNDS]`: agent/tests/crash.rs at length: the agent kill -9'd ROUNDS times
//! while a workload writes through its protected device; after one last start the target's
//! latest must equal the source byte for byte.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use super::settings::Settings;
use super::{progress, tools};

/// Runs the target's campaign; its exit code is the bench's.
pub fn run(settings: &Settings, rounds_arg: &str) -> Result<ExitCode> {
    let rounds = parse_rounds("crash", rounds_arg)?;
    progress::log(format!("crash test: {rounds} kill -9 rounds per io engine"));
    campaign(
        settings,
        &["-p", "rewind-mtd", "--test", "crash", "crash_kill9"],
        ("REWIND_CRASH_ROUNDS", rounds),
    )
}

/// Runs the agent's campaign; its exit code is the bench's.
pub fn run_agent(settings: &Settings, rounds_arg: &str) -> Result<ExitCode> {
    let rounds = parse_rounds("crash-agent", rounds_arg)?;
    progress::log(format!(
        "agent crash test: {rounds} kill -9 rounds of the agent"
    ));
    campaign(
        settings,
        &["-p", "rewind-agent", "--test", "crash"],
        ("REWIND_AGENT_CRASH_ROUNDS", rounds),
    )
}

fn parse_rounds(cmd: &str, arg: &str) -> Result<u64> {
    arg.parse::<u64>()
        .ok()
        .filter(|&r| r > 0)
        .with_context(|| format!("{cmd}: ROUNDS must be a positive number"))
}

/// `cargo test ARGS -- --nocapture` with the rounds in the environment. The tests run the
/// workspace's binaries (rewind-mtd, rewind-agent, rewind-loadgen) from the same target
/// directory, so the workspace is built first.
fn campaign(settings: &Settings, test: &[&str], (var, rounds): (&str, u64)) -> Result<ExitCode> {
    if !tools::cargo(settings, &["build", "--workspace"])? {
        bail!("build failed");
    }
    let status = progress::hidden(|| {
        Command::new("cargo")
            .arg("test")
            .args(test)
            .args(["--", "--nocapture", "--test-threads=1"])
            .env(var, rounds.to_string())
            .current_dir(&settings.root)
            .status()
    })
    .context("running cargo test")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
