//! `rewind group ...`: operations on a whole protection group.

use anyhow::{Context, Result};
use clap::Subcommand;

use super::table::json_or;
use crate::api::Deleted;
use crate::client::Client;

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Delete group G and everything the target holds of it (base images, journal, points).
    /// Refused while anything uses it: a connected agent, an overlay, a loop device or mount, a
    /// failover state, an open view (NBD, FUSE).
    Delete { group: String },
}

/// Run a `group` subcommand; returns what to print.
pub fn run(c: &Client, json: bool, cmd: &GroupCmd) -> Result<String> {
    match cmd {
        GroupCmd::Delete { group } => {
            // Checked here too, so a bad name never becomes part of a request path.
            rewind_formats::validate_name(group)
                .with_context(|| format!("group name {group:?}"))?;
            let d: Deleted = c.delete(&format!("/v1/groups/{group}"))?;
            json_or(json, &d, |_| format!("deleted group {group}\n"))
        }
    }
}
