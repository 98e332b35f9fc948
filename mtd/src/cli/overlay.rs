//! `rewind overlay create|list|delete`: writable overlays over recovery points.

use anyhow::Result;
use clap::Subcommand;

use super::table::{bytes, json_or, table};
use crate::api::overlays::{OverlayCreate, OverlayInfo};
use crate::api::Deleted;
use crate::client::Client;
use crate::names::parse_overlay;

#[derive(Subcommand)]
pub enum OverlayCmd {
    /// Make overlay NAME over GROUP/DISK[@POINT] (exported as GROUP/DISK@overlay:NAME).
    Create {
        #[arg(value_parser = parse_overlay)]
        name: String,
        export: String,
    },
    List,
    Delete {
        #[arg(value_parser = parse_overlay)]
        name: String,
    },
}

pub fn run(c: &Client, json: bool, cmd: &OverlayCmd) -> Result<String> {
    match cmd {
        OverlayCmd::Create { name, export } => {
            let o: OverlayInfo = c.post(
                "/v1/overlays",
                &OverlayCreate {
                    name: name.clone(),
                    export: export.clone(),
                },
            )?;
            json_or(json, &o, |o| {
                let m = &o.meta;
                format!(
                    "overlay {} over {}/{} at seq {}: export {}/{}@overlay:{}\n",
                    m.name, m.group, m.disk, m.seq, m.group, m.disk, m.name
                )
            })
        }
        OverlayCmd::List => {
            let list: Vec<OverlayInfo> = c.get("/v1/overlays")?;
            json_or(json, &list, |l| overlays_table(l))
        }
        OverlayCmd::Delete { name } => {
            let d: Deleted = c.delete(&format!("/v1/overlays/{name}"))?;
            json_or(json, &d, |_| format!("deleted overlay {name}\n"))
        }
    }
}

fn overlays_table(list: &[OverlayInfo]) -> String {
    let rows = list
        .iter()
        .map(|o| {
            let m = &o.meta;
            vec![
                m.name.clone(),
                format!("{}/{}", m.group, m.disk),
                format!("{} (seq {})", m.point, m.seq),
                bytes(o.used_bytes),
                o.users.to_string(),
            ]
        })
        .collect();
    table(&["OVERLAY", "DISK", "POINT", "WRITTEN", "USERS"], rows)
}
