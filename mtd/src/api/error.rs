//! The body of every 4xx/5xx answer of the control API.

use serde::{Deserialize, Serialize};

/// `{"error": "..."}`: what went wrong and, where there is one, what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}
