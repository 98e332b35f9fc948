//! The loadgen's error type.

use rewind_formats::{DecodeError, ErrorCode};

/// What went wrong, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local or socket IO operation failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The target sent bytes that do not decode.
    #[error("bad frame from the target ({what})")]
    Decode {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    /// The target sent an ERROR frame.
    #[error("target sent ERROR {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    /// The target broke the protocol (unexpected message, ack beyond what was sent, ...).
    #[error("protocol violation by the target: {0}")]
    Protocol(String),
    /// The connection closed or failed; with `--reconnect`, `run` resumes after this.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The target resumed below a seq it had acknowledged: acknowledged data was lost.
    #[error("target lost acknowledged data: group {group} resumes at durable seq {durable} but seq {acked} was acked")]
    LostAck {
        group: String,
        durable: u64,
        acked: u64,
    },
    /// Waited too long for something (an ack, a reconnect).
    #[error("timed out: {0}")]
    Timeout(String),
    /// A bad argument or an unusable input file.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result with the loadgen's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds a closure that wraps an `io::Error` with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// True when a reconnect may help (the connection failed, not the target's judgement).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ConnectionLost(_))
    }
}
