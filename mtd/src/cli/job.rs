//! Following a job of the control API until it ends: a progress bar on a terminal, one line per
//! step otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::Client;

/// Poll `GET /v1/jobs/{id}` until the job ends; its result, or its error as an error.
pub fn follow(c: &Client, job: &Value, quiet: bool) -> Result<Value> {
    let id = job["id"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("the daemon answered without a job id: {job}"))?;
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(100);
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos:>3}% {msg}")
                .expect("template"),
        );
        b
    });
    let mut last_msg = String::new();
    loop {
        let v = c.get(&format!("/v1/jobs/{id}"))?;
        let msg = v["message"].as_str().unwrap_or("").to_string();
        let pct = v["percent"].as_f64().unwrap_or(0.0);
        match &bar {
            Some(b) => {
                b.set_position(pct as u64);
                b.set_message(msg.clone());
            }
            None if !quiet && msg != last_msg && v["state"] == "running" => {
                eprintln!("[{pct:>3.0}%] {msg}");
            }
            None => {}
        }
        last_msg = msg;
        match v["state"].as_str() {
            Some("running") => std::thread::sleep(Duration::from_millis(100)),
            Some("succeeded") => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Ok(v["result"].clone());
            }
            _ => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                bail!(
                    "{} failed: {}",
                    v["kind"].as_str().unwrap_or("job"),
                    v["error"].as_str().unwrap_or("unknown error")
                );
            }
        }
    }
}
