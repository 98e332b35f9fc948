//! The target's CONTROL frames, as the session's reader gets them: a drain or resume is
//! recorded for the drain thread, a verify request for the verify thread, anything that cannot
//! be done is refused with an ERROR (which ends the session, so the target's waiter learns at
//! once); a policy goes to [`crate::policy`], and one it cannot apply is refused with an ERROR
//! the target records without ending the session.

use rewind_formats::{Control, ControlOp, ErrorCode, TagKind, TAG_REFUSED_PREFIX};

use rewind_formats::policy::REFUSED_PREFIX;

use crate::stream::queue::Queue;
use crate::stream::sender::Control as ControlTargets;

/// Handles one CONTROL frame for `group` (the group this agent serves).
pub fn control(c: Control, group: &str, to: &ControlTargets, queue: &Queue) {
    let (drain, gate, outbox, policy, verify) =
        (&*to.drain, &*to.gate, &to.outbox, &*to.policy, &*to.verify);
    if c.group != group {
        outbox.send_error(
            ErrorCode::UnknownGroup,
            format!(
                "CONTROL {:?} for group {}: this agent serves group {group}",
                c.op, c.group
            ),
        );
        return;
    }
    match c.op {
        ControlOp::Drain => {
            let r = rewind_formats::validate_name(&c.arg)
                .map_err(|e| format!("drain: bad tag name {:?}: {e}", c.arg))
                .and_then(|()| {
                    if gate.fenced().is_some() {
                        return Err("drain: this agent is fenced".to_string());
                    }
                    drain.request(&c.arg).map_err(|e| format!("drain: {e}"))
                });
            match r {
                Ok(()) => {
                    tracing::info!(group, tag = %c.arg, "the target asks for a drain");
                }
                Err(why) => {
                    tracing::warn!(group, %why, "drain refused");
                    outbox.send_error(ErrorCode::Busy, why);
                }
            }
        }
        ControlOp::Resume => {
            if drain.resume(gate) {
                tracing::warn!(
                    group,
                    "the target gave up the drain: writes are accepted again"
                );
            }
        }
        // Refused with the prefix the target records without ending the session.
        ControlOp::Policy => match policy.apply(&c.arg) {
            Ok(label) => tracing::info!(group, policy = %label, "policy from the target applied"),
            Err(why) => {
                tracing::warn!(group, %why, "policy from the target refused");
                outbox.send_error(
                    ErrorCode::OutOfRange,
                    format!("{REFUSED_PREFIX}{group}: {why}"),
                );
            }
        },
        // A user tag at the current seq, as `rewind-agent tag` inserts (the site's "tag now").
        ControlOp::TagRequest => {
            let r = rewind_formats::validate_name(&c.arg)
                .map_err(|e| format!("bad tag name: {e}"))
                .and_then(|()| match gate.fenced() {
                    Some(_) => Err("this agent is fenced".to_string()),
                    None => queue
                        .push_tag(&c.arg, TagKind::User, crate::now_ms())
                        .map_err(|e| e.to_string()),
                });
            match r {
                Ok((_, seq)) => {
                    tracing::info!(group, tag = %c.arg, ?seq, "the target asks for a tag: queued");
                }
                Err(why) => {
                    tracing::warn!(group, tag = %c.arg, %why, "tag request refused");
                    outbox.send_error(
                        ErrorCode::Busy,
                        format!("{TAG_REFUSED_PREFIX}{group}: {}: {why}", c.arg),
                    );
                }
            }
        }
        // The online verify runs on its own thread (see `crate::sync::verify`); a request that
        // does not parse is dropped (the target's job times out and says so).
        ControlOp::VerifyRequest => match rewind_formats::verify::VerifyRequest::parse(&c.arg) {
            Ok(r) => verify.post(r),
            Err(why) => tracing::warn!(group, %why, "verify request dropped"),
        },
        // Behind a relay: what the master target holds (the relay's ACKs say what it holds).
        ControlOp::TargetDurable => match c.arg.parse::<u64>() {
            Ok(seq) => queue.target_durable(rewind_formats::Seq(seq)),
            Err(_) => tracing::warn!(group, arg = %c.arg, "target-durable with a bad seq ignored"),
        },
        op => {
            tracing::info!(
                group,
                ?op,
                "CONTROL from the target ignored (not implemented)"
            );
        }
    }
}
