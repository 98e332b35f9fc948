//! `rewind adopt GROUP (--disk NAME=PATH ... | --from-live)`: make a replica from existing
//! disks, so replication into it only sends blocks that differ.

use std::path::PathBuf;

use anyhow::Result;

use super::job;
use super::table::json_text;
use crate::api::failover::AdoptRequest;
use crate::client::Client;

pub fn run(
    c: &Client,
    json: bool,
    group: &str,
    agent: &str,
    disks: &[String],
    from_live: bool,
    retention: Option<&str>,
) -> Result<String> {
    let disks: Vec<String> = disks
        .iter()
        .map(|d| match d.split_once('=') {
            // The daemon opens the path: make it absolute here.
            Some((n, p)) => std::path::absolute(PathBuf::from(p))
                .map(|p| format!("{n}={}", p.display()))
                .unwrap_or_else(|_| d.clone()),
            None => d.clone(),
        })
        .collect();
    let req = AdoptRequest {
        disks,
        from_live,
        retention: retention.map(str::to_string),
        agent: Some(agent.to_string()),
    };
    let r = job::start(c, &format!("/v1/groups/{group}/adopt"), &req, json)?;
    Ok(if json {
        json_text(&r)?
    } else {
        format!("group {group} adopted: the first agent compares block hashes and sends only what differs\n")
    })
}
