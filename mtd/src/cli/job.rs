//! `rewind job ID`, and following a job of the control API until it ends (failovers, reverse
//! replication and adoption run as jobs): a progress bar on a terminal, one line per step
//! otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::table::json_text;
use crate::api::jobs::{JobInfo, JobResult, JobState};
use crate::client::Client;

/// `rewind job ID`: follow the job; print its result as JSON.
pub fn run(c: &Client, json: bool, id: u64) -> Result<String> {
    json_text(&follow(c, id, json)?)
}

/// Poll `GET /v1/jobs/{id}` until the job ends; its result, or its error as an error.
pub fn follow(c: &Client, id: u64, quiet: bool) -> Result<Option<JobResult>> {
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(100);
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos:>3}% {msg}")
                .expect("template"),
        );
        b
    });
    // The last step printed: every later one is printed, also those that came and went
    // between two polls (a fast job would otherwise show only its first and last).
    let mut printed = 0u64;
    loop {
        let j: JobInfo = c.get(&format!("/v1/jobs/{id}"))?;
        let pct = j.percent;
        match &bar {
            Some(b) => {
                b.set_position(pct as u64);
                b.set_message(j.message.clone());
            }
            None if !quiet => {
                for s in j.steps.iter().filter(|s| s.n > printed) {
                    // The step a job ended on is its result's to tell.
                    if j.state != JobState::Running && s.message == j.message {
                        continue;
                    }
                    eprintln!("[{:>3.0}%] {}", s.percent, s.message);
                }
            }
            None => {}
        }
        printed = j.steps.last().map_or(printed, |s| s.n);
        match j.state {
            JobState::Running => std::thread::sleep(Duration::from_millis(100)),
            JobState::Succeeded => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Ok(j.result);
            }
            JobState::Failed => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                bail!(
                    "{} failed: {}",
                    j.kind,
                    j.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
}

/// Start a job with `POST path` and follow it.
pub fn start(
    c: &Client,
    path: &str,
    body: &impl serde::Serialize,
    quiet: bool,
) -> Result<Option<JobResult>> {
    let job: JobInfo = c.post(path, body)?;
    follow(c, job.id, quiet)
}
