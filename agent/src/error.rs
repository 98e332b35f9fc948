//! The agent library's errors: what failed, and on what (disk, offset, path, address).

use std::io;
use std::path::PathBuf;

use rewind_formats::{DecodeError, ErrorCode};

/// Anything the agent library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong (a flag, later the config file).
    #[error("invalid setting {what}: {why}")]
    Config { what: &'static str, why: String },
    /// IO on a protected disk's backing device or file.
    #[error("disk {disk}: {op} at offset {offset}")]
    DiskIo {
        disk: String,
        op: &'static str,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// IO on some other path (state dir, mount dir, links).
    #[error("{op} {}", path.display())]
    PathIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A helper command (losetup, fsfreeze) failed.
    #[error("{command}: {why}")]
    Command { command: String, why: String },
    /// Mounting the capture FUSE file system failed.
    #[error("mounting the capture file system at {}", path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The connection to the target broke or could not be made (retried with backoff).
    #[error("connection to {addr}: {why}")]
    Connection { addr: String, why: String },
    /// The target answered with an ERROR frame.
    #[error("the target refused: {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    /// The target sent something this agent does not accept.
    #[error("protocol error from the target: {0}")]
    Protocol(String),
    /// A frame from the target did not decode.
    #[error("decoding {what} from the target")]
    Decode {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    /// Writes are refused: the group is drained for a failover, or fenced (it failed over).
    #[error("writes are refused: {0}")]
    ReadOnly(String),
    /// The group failed over: this host is no longer its source (STATE_DIR/GROUP.fenced).
    #[error(
        "group {group} was failed over and this host is no longer its source: {reason} \
         (recorded in {}); to protect this host again (after failback), start with a fresh \
         state dir or remove that file",
        path.display()
    )]
    Fenced {
        group: String,
        reason: String,
        path: PathBuf,
    },
    /// The agent is shutting down.
    #[error("the agent is stopping")]
    Stopping,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn path(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::PathIo { op, path, source }
    }

    pub(crate) fn disk(
        disk: &str,
        op: &'static str,
        offset: u64,
    ) -> impl FnOnce(io::Error) -> Error {
        let disk = disk.to_string();
        move |source| Error::DiskIo {
            disk,
            op,
            offset,
            source,
        }
    }
}
