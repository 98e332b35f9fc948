//! `rewind-loadgen` workloads: the same flags for `run` and `verify`, so that what was sent can
//! be checked against a dump.

use std::path::Path;
use std::process::{Command, Output};

use super::bins::bin;
use super::cmd::run;

/// Workload flags shared by `rewind-loadgen run` and `verify`.
#[derive(Clone)]
pub struct Workload {
    pub group: String,
    pub disks: Vec<String>,
    pub seed: u64,
    pub pattern: &'static str,
    pub record_size: &'static str,
    pub payload: &'static str,
}

impl Workload {
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![];
        for d in &self.disks {
            a.push("--disk".into());
            a.push(d.clone());
        }
        a.extend([
            "--seed".into(),
            self.seed.to_string(),
            "--pattern".into(),
            self.pattern.into(),
            "--record-size".into(),
            self.record_size.into(),
            "--payload".into(),
            self.payload.into(),
        ]);
        a
    }

    pub fn run_cmd(&self, connect: &str, total: &str) -> Command {
        let mut c = Command::new(bin("rewind-loadgen"));
        c.args([
            "run",
            "--connect",
            connect,
            "--group",
            &self.group,
            "--total",
            total,
        ])
        .args(self.args());
        c
    }

    /// Compare a dumped image of disk `index` against the model at `seq`.
    pub fn verify(&self, image: &Path, index: usize, seq: u64) -> Output {
        run(Command::new(bin("rewind-loadgen"))
            .args(["verify", "--image"])
            .arg(image)
            .args([
                "--disk-index",
                &index.to_string(),
                "--seq",
                &seq.to_string(),
            ])
            .args(self.args()))
    }
}

/// The highest seq the load generator saw acknowledged (its `--state` file; 0 before the first).
pub fn acked(state: &Path) -> u64 {
    crate::state::read_state(state)
        .expect("load generator state file")
        .unwrap_or(0)
}
