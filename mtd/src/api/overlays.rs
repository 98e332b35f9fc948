//! `GET|POST /v1/overlays` and `DELETE /v1/overlays/{name}` (answered with
//! [`super::Deleted`]).

use serde::{Deserialize, Serialize};

pub use crate::views::overlay::{OverlayInfo, OverlayMeta};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayCreate {
    pub name: String,
    /// `GROUP/DISK[@POINT]`: what the overlay is over.
    pub export: String,
}
