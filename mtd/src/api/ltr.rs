//! `POST /v1/ltr/gc`: long-term garbage collection on demand.

use serde::{Deserialize, Serialize};

pub use crate::ltr::gc::GcStats;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Keep unreferenced chunks younger than this (`24h`, `0s`); default the daemon's
    /// `--ltr-gc-grace`.
    #[serde(default)]
    pub grace: Option<String>,
}
