//! `netfault MINUTES`: network faults between a real agent and a real target for that long.
//! benches/tests/netfault.rs (`netfault_campaign`) puts the fault proxy
//! (`rewind_benches::faultproxy`) between `rewind-agent` and `rewind-mtd` on plain loopback TCP,
//! injects cuts, stalls, latency, bandwidth limits, truncations, duplications and corruptions
//! at random in rounds, and after each round checks that the agent caught up and that latest
//! equals the source; it prints the faults injected by kind and
//! `bar netfault-diverged: N (want <= 0)`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::settings::Settings;
use super::{progress, suite_test};

/// Runs the campaign; its exit code is the bench's.
pub fn run(settings: &Settings, minutes_arg: &str) -> Result<ExitCode> {
    let minutes = suite_test::minutes("netfault", minutes_arg)?;
    progress::log(format!(
        "netfault: {minutes} min of random network faults between agent and target"
    ));
    suite_test::run(
        settings,
        "netfault",
        "netfault_campaign",
        "REWIND_NETFAULT_MINUTES",
        &minutes.to_string(),
    )
}

/// `oracle ROUNDS`: the sector-header oracle (benches/tests/oracle.rs) with ROUNDS rounds of
/// writes and tags, every tag and time and a sample of seqs read through NBD, FUSE and loop.
pub fn oracle(settings: &Settings, rounds_arg: &str) -> Result<ExitCode> {
    let rounds = rounds_arg
        .parse::<u64>()
        .ok()
        .filter(|r| (1..=10_000).contains(r))
        .with_context(|| format!("oracle: ROUNDS must be 1 to 10000, not {rounds_arg:?}"))?;
    progress::log(format!("oracle: {rounds} rounds of self-describing writes"));
    suite_test::run(
        settings,
        "oracle",
        "every_point_is_a_prefix_of_the_writes",
        "REWIND_ORACLE_ROUNDS",
        &rounds.to_string(),
    )
}
