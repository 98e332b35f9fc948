//! push-install's progress: one line per step on the terminal (`[n/7] step: detail`, or with
//! `--json` one JSON object per line with the step's percent), and the same steps reported to
//! the site as a client job (`POST /v1/jobs`, then `/v1/jobs/ID/progress`), so the console and
//! `rewind-site jobs` show the install with its percent, and its failure with the reason.

use anyhow::{Context, Result};

use crate::api::{ClientJobProgress, ClientJobStart, Job, MAX_CLIENT_JOB_DETAIL};
use crate::cli::ConnArgs;

pub const STEPS: usize = 7;

pub struct Steps<'a> {
    conn: &'a ConnArgs,
    n: usize,
    job: i64,
}

impl<'a> Steps<'a> {
    /// Starts the site job (before any step: a site that refuses it stops the install).
    pub async fn start(conn: &'a ConnArgs, host: &str) -> Result<Steps<'a>> {
        let job: Job = conn
            .send(
                "POST",
                "/v1/jobs",
                &ClientJobStart {
                    kind: "push-install".into(),
                    subject: host.into(),
                    total: STEPS as i64,
                },
            )
            .await
            .context("starting the site job for push-install")?;
        Ok(Steps {
            conn,
            n: 0,
            job: job.id,
        })
    }

    /// The next step is done.
    pub async fn say(&mut self, what: &str, how: &str) {
        self.n += 1;
        if self.conn.json {
            let line = serde_json::json!({
                "step": self.n,
                "of": STEPS,
                "percent": self.n * 100 / STEPS,
                "name": what,
                "detail": how,
                "job": self.job,
            });
            println!("{line}");
        } else {
            println!("[{}/{STEPS}] {what}: {how}", self.n);
        }
        let state = if self.n == STEPS { "done" } else { "running" };
        self.report(state, &format!("{what}: {how}")).await;
    }

    /// The last line: whether anything was changed, and how long it took.
    pub async fn finish(&self, host: &str, changed: bool, summary: &str, seconds: f64) {
        if self.conn.json {
            let line = serde_json::json!({
                "host": host,
                "done": true,
                "changed": changed,
                "seconds": (seconds * 10.0).round() / 10.0,
                "summary": summary,
                "job": self.job,
            });
            println!("{line}");
        } else if changed {
            println!(
                "push-install {host}: done in {seconds:.1} s (site job {})",
                self.job
            );
        } else {
            println!("push-install {host}: nothing to do ({summary})");
        }
    }

    /// A step failed: the job is failed with the reason (the error itself goes to stderr).
    pub async fn fail(&self, why: &str) {
        let step = [
            "connect",
            "protect",
            "copy package",
            "install",
            "settings",
            "start",
        ]
        .get(self.n)
        .copied()
        .unwrap_or("welcome");
        self.report("failed", &format!("{step}: {why}")).await;
    }

    /// Reports to the site; a report that fails is said on stderr and the install goes on
    /// (the host matters more than its job's line in the console).
    async fn report(&self, state: &str, detail: &str) {
        let detail = one_line(detail);
        let r: Result<Job> = self
            .conn
            .send(
                "POST",
                &format!("/v1/jobs/{}/progress", self.job),
                &ClientJobProgress {
                    done: self.n as i64,
                    state: state.into(),
                    detail,
                },
            )
            .await;
        if let Err(e) = r {
            eprintln!(
                "push-install: reporting step {} to site job {}: {e:#}",
                self.n, self.job
            );
        }
    }
}

/// A detail as the site takes it: one line, at most its length, cut at a char boundary.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_CLIENT_JOB_DETAIL {
        let mut cut = MAX_CLIENT_JOB_DETAIL;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
