//! `netfault MINUTES`: network faults between a real agent and a real target for that long.
//! benches/tests/netfault.rs (`netfault_campaign`) puts the fault proxy
//! (`rewind_benches::faultproxy`) between `rewind-agent` and `rewind-mtd` on plain loopback TCP,
//! injects cuts, stalls, latency, bandwidth limits, truncations, duplications and corruptions
//! at random in rounds, and after each round checks that the agent caught up and that latest
//! equals the source; it prints the faults injected by kind and
//! `bar netfault-diverged: N (want <= 0)`.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use super::settings::Settings;
use super::{progress, tools};

/// Runs the campaign; its exit code is the bench's.
pub fn run(settings: &Settings, minutes_arg: &str) -> Result<ExitCode> {
    let minutes = minutes_arg
        .parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m > 0.0 && *m <= 10_000.0)
        .with_context(|| {
            format!(
                "netfault: MINUTES must be a number of minutes in (0, 10000], not {minutes_arg:?}"
            )
        })?;
    progress::log(format!(
        "netfault: {minutes} min of random network faults between agent and target"
    ));
    // The test runs the agent and daemon binaries from the same target directory.
    if !tools::cargo(
        settings,
        &["build", "-p", "rewind-agent", "-p", "rewind-mtd"],
    )? {
        bail!("build failed");
    }
    let status = progress::hidden(|| {
        Command::new("cargo")
            .args([
                "test",
                "-p",
                "rewind-benches",
                "--test",
                "netfault",
                "netfault_campaign",
                "--",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env("REWIND_NETFAULT_MINUTES", minutes.to_string())
            .current_dir(&settings.root)
            .status()
    })
    .context("running cargo test")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
