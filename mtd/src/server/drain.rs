//! Drain: the first half of a planned failover, and on its own "flush and mark".
//!
//! The target asks the agent feeding a group to drain (CONTROL Drain, arg = a tag name). The
//! agent refuses new writes from then on, lets the writes in flight finish, waits for a running
//! sync to end, and tags its last captured seq with a Failover tag of that name. Once that tag
//! is durable here, the replica at the tag equals the source disks byte for byte, and nothing
//! newer can be written at the source: the group can be promoted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::message::{Control, ControlOp, TagKind};

use super::registry::{self, SessionEnd};
use crate::store::group::Group;
use crate::store::Store;

/// How long the drain request may wait for room in the session's frame queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum DrainError {
    #[error("no such group {0}")]
    UnknownGroup(String),
    #[error("bad tag name {name:?}: {why}")]
    BadTag { name: String, why: String },
    #[error(
        "no agent is connected for group {0}: planned failover needs the source agent; if the \
         source is gone run `rewind failover unplanned {0} --point latest`"
    )]
    NotConnected(String),
    /// The agent answered the drain with an ERROR.
    #[error("the agent of group {group} refused to drain: {why}")]
    Refused { group: String, why: String },
    #[error("the agent's session for group {group} ended before the drain tag arrived: {why}")]
    SessionEnded { group: String, why: String },
    #[error(
        "group {group}: the drain tag {tag:?} was not durable after {} s (the agent was asked \
         to resume writes)",
        timeout.as_secs()
    )]
    Timeout {
        group: String,
        tag: String,
        timeout: Duration,
    },
}

/// Ask the agent feeding `group` to drain, and wait up to `timeout` for its Failover tag named
/// `tag` to be durable. Returns the tag's seq: the replica at that seq is the source's last state.
///
/// On a timeout the agent is asked to resume writes (CONTROL Resume), since no promotion follows.
pub(crate) async fn drain(
    store: &Arc<Store>,
    group: &str,
    tag: &str,
    timeout: Duration,
) -> Result<u64, DrainError> {
    rewind_formats::validate_name(tag).map_err(|e| DrainError::BadTag {
        name: tag.into(),
        why: e.to_string(),
    })?;
    let g = store
        .group(group)
        .map_err(|_| DrainError::UnknownGroup(group.into()))?;
    // Tags of this name already here do not count: only one the agent sends for this drain (an
    // agent already drained under this name sends the tag again, at the same seq).
    let before = failover_tags(&g, tag);
    let mut durable = g.subscribe_durable();
    // The session asked and the session watched are the same one: both taken under one lock.
    let (out, mut ended) = match registry::link(&g) {
        Some(link) => (link.out, link.ended),
        None => return Err(DrainError::NotConnected(group.into())),
    };
    let frame = Control::frame(group, ControlOp::Drain, tag);
    // The session's frame queue is short and drained by its writer; a session that takes no
    // frame for a while is stuck.
    match tokio::time::timeout(SEND_TIMEOUT, out.send(frame)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(DrainError::NotConnected(group.into())),
        Err(_) => {
            return Err(DrainError::SessionEnded {
                group: group.into(),
                why: format!(
                    "the session took no frame for {} s (is the agent reading?)",
                    SEND_TIMEOUT.as_secs()
                ),
            })
        }
    }
    // A held sender would keep the session's writer, and so its connection, open after the
    // session ends.
    drop(out);
    tracing::info!(group, tag, "drain requested from the agent");
    let wait = async {
        loop {
            // (Every published chunk, a tag too, wakes `durable`.)
            durable.borrow_and_update();
            if let Some(seq) = new_failover_tag(&g, tag, &before) {
                return Ok(seq);
            }
            if let Some(end) = ended.borrow_and_update().clone() {
                return Err(session_end(group, end));
            }
            tokio::select! {
                r = durable.changed() => {
                    if r.is_err() {
                        return Err(DrainError::SessionEnded {
                            group: group.into(),
                            why: "the group was closed".into(),
                        });
                    }
                }
                r = ended.changed() => {
                    if r.is_err() {
                        // The session is gone (its sender dropped): one last look at the tags.
                        if let Some(seq) = new_failover_tag(&g, tag, &before) {
                            return Ok(seq);
                        }
                        return Err(DrainError::SessionEnded {
                            group: group.into(),
                            why: "the session closed".into(),
                        });
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(seq)) => {
            tracing::info!(group, tag, seq, "drained: the tag is durable");
            Ok(seq)
        }
        Ok(Err(e)) => {
            tracing::warn!(group, tag, error = %e, "drain failed");
            Err(e)
        }
        Err(_) => {
            // No promotion follows a failed drain: let the source take writes again.
            if let Err(e) = registry::send_control(&g, ControlOp::Resume, tag) {
                tracing::warn!(group, error = %e, "cannot ask the agent to resume after a drain timeout");
            }
            let e = DrainError::Timeout {
                group: group.into(),
                tag: tag.into(),
                timeout,
            };
            tracing::warn!(group, tag, error = %e, "drain failed");
            Err(e)
        }
    }
}

fn session_end(group: &str, end: SessionEnd) -> DrainError {
    if end.by_agent {
        DrainError::Refused {
            group: group.into(),
            why: end.message,
        }
    } else {
        DrainError::SessionEnded {
            group: group.into(),
            why: end.message,
        }
    }
}

/// The durable Failover tags named `tag`, as (seq, timestamp).
fn failover_tags(g: &Group, tag: &str) -> HashSet<(u64, u64)> {
    g.tags()
        .iter()
        .filter(|t| t.kind == TagKind::Failover && t.name == tag)
        .map(|t| (t.seq.0, t.timestamp_ms))
        .collect()
}

fn new_failover_tag(g: &Group, tag: &str, before: &HashSet<(u64, u64)>) -> Option<u64> {
    failover_tags(g, tag)
        .into_iter()
        .filter(|k| !before.contains(k))
        .map(|(seq, _)| seq)
        .max()
}
