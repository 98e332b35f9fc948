//! `rewind detach DEVICE`: detach a loop device made by `rewind attach`.

use anyhow::Result;

use super::table::json_or;
use crate::api::attachments::{Attachment, DetachRequest};
use crate::client::Client;

pub fn run(c: &Client, json: bool, device: &str) -> Result<String> {
    let a: Attachment = c.post(
        "/v1/detach",
        &DetachRequest {
            device: device.to_string(),
        },
    )?;
    json_or(json, &a, |_| format!("detached {device}\n"))
}
