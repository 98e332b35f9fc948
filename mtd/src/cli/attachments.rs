//! `rewind attachments`: loop devices and mounts made by `rewind attach` and `rewind mount`.

use anyhow::Result;

use super::table::{json_or, or_dash, table};
use crate::api::attachments::Attachment;
use crate::client::Client;

pub fn run(c: &Client, json: bool) -> Result<String> {
    let list: Vec<Attachment> = c.get("/v1/attachments")?;
    json_or(json, &list, |l| attachments_table(l))
}

fn attachments_table(list: &[Attachment]) -> String {
    let rows = list
        .iter()
        .map(|a| {
            vec![
                a.device.clone(),
                a.export.clone(),
                if a.writable { "rw".into() } else { "ro".into() },
                or_dash(a.mountpoint.as_ref().map(|m| m.display())),
            ]
        })
        .collect();
    table(&["DEVICE", "EXPORT", "MODE", "MOUNTED AT"], rows)
}
