//! The control API's request and reply types, by resource: what `rewind-mtd` (`control/`)
//! takes and answers, and what the `rewind` CLI's client (`client.rs`, `cli/`) sends and reads.
//! Each is defined once, so the two sides cannot drift apart.
//!
//! Replies that are records of the domain (a group report, an overlay, an attachment, a
//! failover state, a recovery plan run) are re-exported from where the domain defines them.
//! Optional fields keep the wire behaviour they always had: `null` where the record always
//! carried the field, absent where it never did (`skip_serializing_if`).

pub mod attachments;
pub mod drain;
pub mod drill;
pub mod error;
pub mod failover;
pub mod groups;
pub mod jobs;
pub mod ltr;
pub mod overlays;
pub mod plans;
pub mod points;
pub mod policy;
pub mod verify;

use serde::{Deserialize, Serialize};

/// The answer to a delete: the name of what is gone (a group, an overlay).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

/// A request without parameters: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}
