//! `rewind mount GROUP/DISK[@POINT] DIR`: mount an export through a throwaway overlay.

use std::path::Path;

use anyhow::Result;

use super::table::{json_or, or_dash};
use crate::api::attachments::{Attachment, MountRequest};
use crate::client::Client;

pub fn run(
    c: &Client,
    json: bool,
    export: &str,
    dir: &Path,
    partition: Option<u32>,
    options: Option<&str>,
) -> Result<String> {
    // The daemon resolves the directory: make it absolute here.
    let dir = std::path::absolute(dir)?;
    let a: Attachment = c.post(
        "/v1/mounts",
        &MountRequest {
            export: export.to_string(),
            dir: dir.clone(),
            partition,
            options: options.map(str::to_string),
        },
    )?;
    json_or(json, &a, |a| {
        format!(
            "mounted {export} at {} (device {}, throwaway overlay {})\n",
            dir.display(),
            a.device,
            or_dash(a.overlay.as_ref())
        )
    })
}
