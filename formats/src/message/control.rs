//! CONTROL: the target asks the agent for an operation on a group; and (frame version 2 on) the
//! agent reports on a group to the target ([`ControlOp::Report`], [`ControlOp::VerifyReport`]).

use super::{truncate_text, Message};
use crate::bytes::{Reader, Writer};
use crate::DecodeError;

/// How an agent's ERROR frame begins when it cannot insert the tag a CONTROL tag request asked
/// for (frame version 2 on), followed by `GROUP: NAME: why` (`tag refused: web: nightly: the
/// agent is in bitmap mode ...`). Like a refused policy's, it does not end the session: the
/// target tells whoever asked.
pub const TAG_REFUSED_PREFIX: &str = "tag refused: ";

/// target -> agent: an operation on a group; agent -> target: a [`ControlOp::Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub group: String,
    pub op: ControlOp,
    pub arg: String,
}

impl Control {
    /// The frame of a CONTROL message for `group`.
    pub fn frame(group: &str, op: ControlOp, arg: &str) -> Vec<u8> {
        Message::Control(Control {
            group: group.into(),
            op,
            arg: arg.into(),
        })
        .to_frame()
    }
}

/// What a CONTROL message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ControlOp {
    Drain = 1,
    Pause = 2,
    Resume = 3,
    /// Insert a user tag named `arg` at the current seq, as `rewind-agent tag` does (refused
    /// with [`TAG_REFUSED_PREFIX`] where no point can be tagged).
    TagRequest = 4,
    Resync = 5,
    /// A replication policy to apply (`arg`: [`crate::policy::Policy`] as JSON).
    Policy = 6,
    /// agent -> target (frame version 2 on): how the group stands at the source (`arg`:
    /// [`crate::agent_report::AgentReport`] as JSON).
    Report = 7,
    /// target -> agent (frame version 2 on): run an online verify (`arg`:
    /// [`crate::verify::VerifyRequest`] as JSON).
    VerifyRequest = 8,
    /// agent -> target (frame version 2 on): how a verify stands (`arg`:
    /// [`crate::verify::VerifyReport`] as JSON).
    VerifyReport = 9,
    /// relay -> agent (frame version 2 on): the master target holds the group up to the seq in
    /// `arg` (decimal). A relay's ACKs say what its cache holds; this says what the target holds,
    /// which the agent's RPO is measured against. Sent after WELCOME and at every target ACK.
    TargetDurable = 10,
}

impl ControlOp {
    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The op with this wire value, if this version knows it.
    pub fn from_u16(v: u16) -> Option<ControlOp> {
        match v {
            1 => Some(ControlOp::Drain),
            2 => Some(ControlOp::Pause),
            3 => Some(ControlOp::Resume),
            4 => Some(ControlOp::TagRequest),
            5 => Some(ControlOp::Resync),
            6 => Some(ControlOp::Policy),
            7 => Some(ControlOp::Report),
            8 => Some(ControlOp::VerifyRequest),
            9 => Some(ControlOp::VerifyReport),
            10 => Some(ControlOp::TargetDurable),
            _ => None,
        }
    }
}

impl Control {
    pub(super) fn write(&self, w: &mut Writer) {
        w.name(&self.group);
        w.u16(self.op.as_u16());
        w.long_str(truncate_text(&self.arg));
    }
}

pub(super) fn read_control(r: &mut Reader<'_>, version: u16) -> Result<Control, DecodeError> {
    let group = r.name("group name")?;
    let op_raw = r.u16()?;
    let op = ControlOp::from_u16(op_raw)
        .ok_or_else(|| DecodeError::invalid("control op", format!("unknown value {op_raw}")))?;
    let since_2 = match op {
        ControlOp::Report => Some("report"),
        ControlOp::VerifyRequest => Some("verify request"),
        ControlOp::VerifyReport => Some("verify report"),
        ControlOp::TargetDurable => Some("target durable"),
        _ => None,
    };
    if let Some(name) = since_2.filter(|_| version < 2) {
        return Err(DecodeError::invalid(
            "control op",
            format!("{name} ({op_raw}) is not in frame version {version}"),
        ));
    }
    let arg = r.long_str("control arg")?;
    Ok(Control { group, op, arg })
}
