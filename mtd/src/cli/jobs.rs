//! `rewind jobs`: recent jobs.

use anyhow::Result;

use super::table::{json_or, table, wire_name};
use crate::api::jobs::JobInfo;
use crate::client::Client;

pub fn run(c: &Client, json: bool) -> Result<String> {
    let list: Vec<JobInfo> = c.get("/v1/jobs")?;
    json_or(json, &list, |l| jobs_table(l))
}

fn jobs_table(list: &[JobInfo]) -> String {
    let rows = list
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.kind.clone(),
                j.group.clone(),
                wire_name(&j.state),
                format!("{:.0}%", j.percent),
                j.error.clone().unwrap_or_else(|| j.message.clone()),
            ]
        })
        .collect();
    table(&["ID", "KIND", "GROUP", "STATE", "DONE", "MESSAGE"], rows)
}
