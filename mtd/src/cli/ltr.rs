//! `rewind ltr gc [--grace D]`: collect long-term garbage now.

use anyhow::Result;

use super::table::json_or;
use crate::api::ltr::{GcRequest, GcStats};
use crate::client::Client;

pub fn gc(c: &Client, json: bool, grace: Option<&str>) -> Result<String> {
    let r: GcStats = c.post(
        "/v1/ltr/gc",
        &GcRequest {
            grace: grace.map(str::to_string),
        },
    )?;
    json_or(json, &r, |r| {
        format!(
            "manifests: {} deleted, {} kept; chunks: {} deleted ({} bytes), {} kept, {} unreferenced but within the grace period\n",
            r.manifests_deleted, r.manifests_kept, r.chunks_deleted, r.chunk_bytes_deleted, r.chunks_kept, r.chunks_in_grace
        )
    })
}
