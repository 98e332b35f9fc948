//! Sending a group's policy to its agent: a CONTROL frame, op Policy, arg the policy as JSON
//! ([`rewind_formats::policy::Policy::to_control_arg`]), right after WELCOME and whenever the
//! policy changes. The agent answers only when it cannot apply it: an ERROR whose message starts
//! with [`rewind_formats::policy::REFUSED_PREFIX`], which the session records and survives (the agent keeps
//! replicating with what it ran before).

use std::sync::Arc;
use std::time::Duration;

use rewind_formats::message::{Control, ControlOp};
use tokio::sync::mpsc;

use super::registry;
use crate::store::group::Group;
use crate::store::Store;

/// How long a send may wait for room in the session's frame queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Send `g`'s policy, if it has one, on `out` (its session's frames).
pub(crate) async fn send(store: &Store, g: &Group, out: &mpsc::Sender<Vec<u8>>) -> bool {
    let Some(mut p) = g.policy() else {
        return false;
    };
    // Drills are the target's business: an agent that predates the field would refuse it.
    p.drill_every_secs = 0;
    // So is long-term retention.
    (p.ltr_hourly_days, p.ltr_daily_weeks, p.ltr_monthly_months) = (0, 0, 0);
    let frame = Control::frame(&g.name, ControlOp::Policy, &p.to_control_arg());
    match tokio::time::timeout(SEND_TIMEOUT, out.send(frame)).await {
        Ok(Ok(())) => {
            g.policy_delivered(p.version);
            tracing::info!(group = %g.name, policy = %p.name, version = p.version, "policy sent to the agent");
            store.events.emit(
                "policy.delivered",
                Some(&g.name),
                serde_json::json!({ "policy": p.name, "version": p.version }),
            );
            true
        }
        _ => {
            tracing::warn!(group = %g.name, "policy not sent: the agent's session takes no frames");
            false
        }
    }
}

/// Send `g`'s policy to the agent feeding it now, if one is. Returns whether it was sent.
pub(crate) async fn deliver(store: &Arc<Store>, g: &Group) -> bool {
    match registry::link(g) {
        Some(link) => send(store, g, &link.out).await,
        None => false,
    }
}
