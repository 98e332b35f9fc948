//! `soak MINUTES`: the whole flow for that long (benches/tests/soak.rs,
//! `soak_resources_stay_bounded`): an ext4 workload through the agent, tags, retention merging,
//! point reads and test failovers, with the target's and the agent's memory and descriptors and
//! the journal's size sampled every few seconds (the curve is printed as `soak: t=...` lines);
//! the test fails if any of them keeps growing.

use std::process::ExitCode;

use anyhow::Result;

use super::settings::Settings;
use super::{progress, suite_test};

pub fn run(settings: &Settings, minutes_arg: &str) -> Result<ExitCode> {
    let minutes = suite_test::minutes("soak", minutes_arg)?;
    progress::log(format!("soak: {minutes} min of the whole flow, sampled"));
    suite_test::run(
        settings,
        "soak",
        "soak_resources_stay_bounded",
        "REWIND_SOAK_MINUTES",
        &minutes.to_string(),
    )
}
