//! `rewind points GROUP`: recovery points of a group: oldest and newest seq and time, tags,
//! app-consistent marks, and the ranges a resync made unrecoverable.

use anyhow::Result;

use super::table::{json_or, or_dash, table, wire_name};
use crate::api::points::PointsReport;
use crate::client::Client;

pub fn run(c: &Client, json: bool, group: &str) -> Result<String> {
    let r: PointsReport = c.get(&format!("/v1/groups/{group}/points"))?;
    json_or(json, &r, points_table)
}

fn points_table(r: &PointsReport) -> String {
    if r.newest.is_none() {
        return format!(
            "group {} has no points yet: nothing has been replicated into it (the initial sync \
             of an empty disk sends nothing; the first write makes the first point)\n",
            r.group
        );
    }
    let mut out = format!(
        "group {}: every seq from {} ({}) to {} ({}) is a crash-consistent point; retention horizon seq {}\n",
        r.group,
        or_dash(r.oldest.as_ref().map(|p| p.seq)),
        or_dash(r.oldest.as_ref().map(|p| &p.time)),
        or_dash(r.newest.as_ref().map(|p| p.seq)),
        or_dash(r.newest.as_ref().map(|p| &p.time)),
        r.horizon_seq,
    );
    if !r.consistent {
        out += "NOT CONSISTENT: a resync is running; points from its start on are not recoverable until it ends\n";
    }
    for w in &r.not_recoverable {
        out += &format!(
            "not recoverable: seq {} to {} ({}, started {})\n",
            w.from_seq,
            match w.to_seq {
                None => "now".to_string(),
                Some(to) => format!("{to} (exclusive)"),
            },
            w.name,
            w.started
        );
    }
    match &r.verified {
        Some(v) => {
            out += &format!(
                "last verified point: seq {} ({}), verified {} by a drill: {} (evidence {})\n",
                v.seq,
                v.point_time_ms
                    .map_or("-".into(), crate::store::points::format_ms),
                crate::store::points::format_ms(v.verified_ms),
                v.summary,
                v.evidence.display()
            )
        }
        None => out += "no verified point: no drill has passed (`rewind drill run`)\n",
    }
    if let Some(f) = &r.last_drill_failed {
        out += &format!("LAST DRILL FAILED: {f}\n");
    }
    if let Some(t) = &r.latest_app_consistent {
        out += &format!("latest app-consistent: tag:{} (seq {})\n", t.name, t.seq);
    }
    let rows: Vec<Vec<String>> = r
        .tags
        .iter()
        .map(|t| {
            vec![
                format!("tag:{}", t.name),
                t.seq.to_string(),
                t.time.clone(),
                wire_name(&t.kind),
            ]
        })
        .collect();
    if rows.is_empty() {
        out += "no tags\n";
    } else {
        out += &table(&["POINT", "SEQ", "TIME", "KIND"], rows);
    }
    if !r.long_term.is_empty() {
        out += "long-term points (LT: kept in object storage, readable after the window):\n";
        let rows = r
            .long_term
            .iter()
            .map(|p| {
                vec![
                    format!("LT seq:{}", p.seq),
                    p.disk.clone(),
                    p.time.clone(),
                    p.keep_until.clone(),
                    if p.app_consistent {
                        "app-consistent"
                    } else {
                        "crash-consistent"
                    }
                    .into(),
                    p.tags.join(","),
                ]
            })
            .collect();
        out += &table(
            &["POINT", "DISK", "TIME", "KEPT UNTIL", "KIND", "TAGS"],
            rows,
        );
    }
    out
}
