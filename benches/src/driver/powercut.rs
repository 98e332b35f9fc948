//! `powercut [ROUNDS]`: the power-cut campaigns at length. mtd/tests/powercut.rs cuts the
//! target's data dir ROUNDS times per io engine under `rewind-loadgen`, agent/tests/powercut.rs
//! the agent's state dir and backing disk ROUNDS times under a flushing workload (both on the
//! power-cut file system, `rewind_benches::powercut`). Each prints a `powercut-result` line;
//! the bars add them up.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

use super::settings::Settings;
use super::{progress, tools};
use crate::harness::parse_powercut_result;

/// The campaigns: (crate, test binary).
const CAMPAIGNS: [(&str, &str); 2] = [("rewind-mtd", "powercut"), ("rewind-agent", "powercut")];

/// Runs the campaigns; its exit code is the bench's (failure if a bar is missed).
pub fn run(settings: &Settings, rounds_arg: &str) -> Result<ExitCode> {
    let rounds = rounds_arg
        .parse::<usize>()
        .ok()
        .filter(|&r| r > 0)
        .context("powercut: ROUNDS must be a positive number")?;
    progress::log(format!("power-cut campaigns: {rounds} cuts per campaign"));
    // The tests run the workspace's other binaries from the same target directory.
    if !tools::cargo(settings, &["build", "--workspace", "--bins"])? {
        bail!("build failed");
    }
    let (mut lost, mut least_rounds, mut campaigns) = (0u64, usize::MAX, 0usize);
    for (krate, test) in CAMPAIGNS {
        progress::log(format!("{krate}: cargo test --test {test}"));
        let mut child = Command::new("cargo")
            .args(["test", "-p", krate, "--test", test, "--"])
            .args(["--nocapture", "--test-threads=1"])
            .env("REWIND_POWERCUT_ROUNDS", rounds.to_string())
            .current_dir(&settings.root)
            .stdout(Stdio::piped())
            .stderr(tools::stdout_to_stderr()?)
            .spawn()
            .context("running cargo test")?;
        let out = child.stdout.take().context("test output")?;
        for line in BufReader::new(out).lines() {
            let line = line.context("reading the test output")?;
            match parse_powercut_result(&line) {
                Some((side, r, l)) => {
                    progress::note(format!("{side}: {r} cuts, {l} acknowledged writes lost"));
                    lost += l;
                    least_rounds = least_rounds.min(r);
                    campaigns += 1;
                }
                None => eprintln!("{line}"),
            }
        }
        let status = child.wait().context("waiting for cargo test")?;
        if !status.success() {
            progress::note(format!("{krate} --test {test} failed ({status})"));
        }
    }
    // mtd: two engines; agent: one.
    let complete = campaigns == 3;
    let rounds_done = if complete { least_rounds } else { 0 };
    // The same line format as `report::print_bars`; the rounds bar's target is the argument.
    println!();
    println!("bar powercut-lost-acked: {lost} (want <= 0)");
    println!("bar powercut-rounds: {rounds_done} (want >= {rounds})");
    Ok(if lost == 0 && rounds_done >= rounds {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
