//! `rewind umount DIR`: unmount a `rewind mount`, detach its loop device, drop its overlay.

use std::path::Path;

use anyhow::Result;

use super::table::json_or;
use crate::api::attachments::{Attachment, UmountRequest};
use crate::client::Client;

pub fn run(c: &Client, json: bool, dir: &Path) -> Result<String> {
    let dir = std::path::absolute(dir)?;
    let a: Attachment = c.post("/v1/umount", &UmountRequest { dir: dir.clone() })?;
    json_or(json, &a, |a| {
        format!("unmounted {} and detached {}\n", dir.display(), a.device)
    })
}
