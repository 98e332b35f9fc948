//! `rewind retention GROUP WINDOW`: change a group's retention window.

use anyhow::Result;

use super::table::json_or;
use crate::api::groups::{RetentionReply, RetentionRequest};
use crate::client::Client;

pub fn run(c: &Client, json: bool, group: &str, retention: &str) -> Result<String> {
    let r: RetentionReply = c.post(
        &format!("/v1/groups/{group}/retention"),
        &RetentionRequest {
            retention: retention.to_string(),
        },
    )?;
    json_or(json, &r, |r| {
        format!("group {group}: retention {}\n", r.retention)
    })
}
