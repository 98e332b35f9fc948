//! Refusals: a request that was wrong or came at the wrong time, refused before anything changed.
//! They are the caller's to fix (the control API answers them with a 4xx), unlike failures of the
//! daemon itself. Shared by the name checks (`crate::names`), failovers and the control API.

/// Why an operation was refused before it changed anything (maps to a 4xx answer).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The group's state does not allow it (a second promotion, commit without a failover...).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}
