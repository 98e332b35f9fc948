//! `rewind attach GROUP/DISK[@POINT]`: a loop device on an export; prints the device (and its
//! partitions).

use anyhow::Result;

use super::table::json_or;
use crate::api::attachments::{AttachRequest, Attachment};
use crate::client::Client;

pub fn run(
    c: &Client,
    json: bool,
    export: &str,
    writable: bool,
    partitions: bool,
) -> Result<String> {
    let a: Attachment = c.post(
        "/v1/attachments",
        &AttachRequest {
            export: export.to_string(),
            writable,
            partitions,
        },
    )?;
    json_or(json, &a, |a| {
        let mut o = format!("{}\n", a.device);
        for p in &a.partitions {
            o += &format!("{p}\n");
        }
        o
    })
}
