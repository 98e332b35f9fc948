//! Telling the agent what the master target holds: with a relay in the path, the ACKs the agent
//! gets say what is durable in the relay's cache (the data has left the host), and a CONTROL
//! `target-durable` (op 10, arg: the seq in decimal) says what is durable at the master target,
//! which is what the agent's RPO is measured against.

use rewind_formats::message::{Control, ControlOp};
use rewind_formats::Seq;

use super::group::RelayGroup;

/// The CONTROL frame telling the agent that the target holds `group` up to `seq`.
pub(crate) fn frame(group: &str, seq: Seq) -> Vec<u8> {
    Control::frame(group, ControlOp::TargetDurable, &seq.0.to_string())
}

/// Tell the agent session feeding `g` (if one is connected) that the target holds `seq`.
pub(crate) async fn tell_agent(g: &RelayGroup, seq: Seq) {
    g.to_agent(frame(&g.name, seq)).await;
}
