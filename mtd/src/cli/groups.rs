//! `rewind groups`: protection groups, their disks, durable seq and retention horizon.

use anyhow::Result;

use super::table::{bytes, json_or, or_dash, table};
use crate::api::groups::Report;
use crate::client::Client;

pub fn run(c: &Client, json: bool) -> Result<String> {
    let r: Report = c.get("/v1/groups")?;
    json_or(json, &r, groups_table)
}

fn groups_table(r: &Report) -> String {
    let rows = r
        .groups
        .iter()
        .map(|g| {
            let disks: Vec<String> = g
                .disks
                .iter()
                .map(|d| format!("{} ({})", d.name, bytes(d.size_bytes)))
                .collect();
            vec![
                g.name.clone(),
                disks.join(", "),
                g.durable_seq.to_string(),
                or_dash(g.newest_point.as_ref().map(|p| &p.time)),
                g.horizon_seq.to_string(),
                g.retention.clone(),
                bytes(g.journal_bytes),
                if g.consistent {
                    "consistent".into()
                } else {
                    "resyncing".into()
                },
                match &g.policy {
                    None => "-".into(),
                    // The version the target runs, and the one the agent was last sent.
                    Some(p) => format!(
                        "{} v{} (agent: {})",
                        p.name,
                        p.version,
                        p.delivered_version
                            .map_or("not sent".to_string(), |v| format!("v{v}"))
                    ),
                },
            ]
        })
        .collect();
    table(
        &[
            "GROUP",
            "DISKS",
            "DURABLE",
            "NEWEST",
            "HORIZON",
            "RETENTION",
            "JOURNAL",
            "STATE",
            "POLICY",
        ],
        rows,
    )
}
