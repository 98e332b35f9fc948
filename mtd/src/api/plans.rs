//! Recovery plans: `POST /v1/plans/run` ([`RunRequest`]); it, `GET /v1/plans/current`,
//! `POST /v1/plans/continue` and `POST /v1/plans/cleanup` answer with the run's [`RunStatus`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::plan::{Outcome, RunState, RunStatus};

/// The CLI sends the plan file's text and its path (for `PATH:LINE:COL` errors).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub path: PathBuf,
    pub text: String,
    pub mode: String,
    #[serde(default)]
    pub point: Option<String>,
}
