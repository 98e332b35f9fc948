//! Drain and fencing, as the source agent sees them: all of it lives here.
//!
//! Planned failover: the target sends CONTROL Drain (arg: a tag name). The session's reader
//! records the request ([`control()`] into [`DrainCtl`]); the drain thread ([`thread`]) does it.
//! From that moment the capture refuses new writes ([`WriteGate`]: EROFS), the writes already in
//! flight finish and are captured, a running sync finishes, and a Failover tag with that name is
//! queued after the last captured record. Once the target acknowledges it, the replica at the tag
//! equals the disks here.
//!
//! Fencing: once the group fails over, the target refuses this agent with a Fenced
//! ERROR. The agent then stops reconnecting, keeps refusing writes, and leaves
//! `STATE_DIR/GROUP.fenced` (the reason) so that it does not start again as the group's source
//! ([`fence`]).

pub mod control;
pub mod gate;
pub mod request;
pub mod thread;

pub use control::control;
pub use gate::WriteGate;
pub use request::{DrainCtl, DrainState};

use crate::error::Error;
use crate::state::StateDir;

/// Whether a refusal from the target fences this agent: ERROR Fenced (the group is at a newer
/// generation: it failed over). A target from before that code sent StaleGeneration with
/// "fenced" in the message, still understood; an agent ahead of the target gets a plain
/// StaleGeneration and keeps retrying.
pub fn is_fencing(e: &Error) -> Option<&str> {
    use rewind_formats::ErrorCode;
    match e {
        Error::Remote {
            code: ErrorCode::Fenced,
            message,
        } => Some(message),
        Error::Remote {
            code: ErrorCode::StaleGeneration,
            message,
        } if message.contains("fenced") => Some(message),
        _ => None,
    }
}

/// The target refused this agent for good: the group failed over. Writes stay refused, and the
/// reason is kept in the state dir (a restart refuses to run as the group's source).
pub fn fence(gate: &WriteGate, state: &StateDir, group: &str, reason: &str) {
    gate.fence(group, reason);
    if let Err(e) = state.write_fenced(reason) {
        tracing::error!(error = %e, file = %state.fenced_file().display(), "recording the fence");
    }
}
