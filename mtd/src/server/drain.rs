//! Drain: the first half of a planned failover, and on its own "flush and mark".
//!
//! The target asks the agent feeding a group to drain (CONTROL Drain, arg = a tag name). The
//! agent refuses new writes from then on, lets the writes in flight finish, waits for a running
//! sync to end, and tags its last captured seq with a Failover tag of that name. Once that tag
//! is durable here, the replica at the tag equals the source disks byte for byte, and nothing
//! newer can be written at the source: the group can be promoted.
//!
//! A tag request (CONTROL TagRequest, the site's "tag now") is the same exchange without the
//! drain: the agent inserts a User tag at its current seq (writes go on) and the target waits for
//! it to be durable. An agent that cannot tag (bitmap mode, a sync running) answers with an ERROR
//! that starts with [`rewind_formats::TAG_REFUSED_PREFIX`], which does not end its session.

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
    #[error("no agent is connected for group {0}: a tag now needs the source agent")]
    NotConnectedForTag(String),
    /// The agent answered the drain or tag request with an ERROR.
    #[error("the agent of group {group} refused the {what}: {why}")]
    Refused {
        group: String,
        what: &'static str,
        why: String,
    },
    #[error("the agent's session for group {group} ended before the {what} tag arrived: {why}")]
    SessionEnded {
        group: String,
        what: &'static str,
        why: String,
    },
    #[error(
        "group {group}: the {what} tag {tag:?} was not durable after {} s{}",
        timeout.as_secs(),
        if *what == "drain" { " (the agent was asked to resume writes)" } else { "" }
    )]
    Timeout {
        group: String,
        what: &'static str,
        tag: String,
        timeout: Duration,
    },
}

/// What is asked of the agent: a drain, or a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    Drain,
    Tag,
}

impl Ask {
    fn what(self) -> &'static str {
        match self {
            Ask::Drain => "drain",
            Ask::Tag => "tag request",
        }
    }

    fn op(self) -> ControlOp {
        match self {
            Ask::Drain => ControlOp::Drain,
            Ask::Tag => ControlOp::TagRequest,
        }
    }

    /// The kind of tag the agent answers with.
    fn kind(self) -> TagKind {
        match self {
            Ask::Drain => TagKind::Failover,
            Ask::Tag => TagKind::User,
        }
    }
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
    ask(store, group, Ask::Drain, tag, timeout).await
}

/// Ask the agent feeding `group` for a User tag named `tag` at its current seq (writes go on),
/// and wait up to `timeout` for it to be durable. Returns the tag's seq.
pub(crate) async fn tag_now(
    store: &Arc<Store>,
    group: &str,
    tag: &str,
    timeout: Duration,
) -> Result<u64, DrainError> {
    ask(store, group, Ask::Tag, tag, timeout).await
}

async fn ask(
    store: &Arc<Store>,
    group: &str,
    what: Ask,
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
    let before = tags_of(&g, what.kind(), tag);
    // A refusal of an earlier request of this name does not count either.
    g.take_tag_refusal(tag);
    let mut durable = g.subscribe_durable();
    // The session asked and the session watched are the same one: both taken under one lock.
    let not_connected = || match what {
        Ask::Drain => DrainError::NotConnected(group.into()),
        Ask::Tag => DrainError::NotConnectedForTag(group.into()),
    };
    let (out, mut ended) = match registry::link(&g) {
        Some(link) => (link.out, link.ended),
        None => return Err(not_connected()),
    };
    let frame = Control::frame(group, what.op(), tag);
    // The session's frame queue is short and drained by its writer; a session that takes no
    // frame for a while is stuck.
    match tokio::time::timeout(SEND_TIMEOUT, out.send(frame)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(not_connected()),
        Err(_) => {
            return Err(DrainError::SessionEnded {
                group: group.into(),
                what: what.what(),
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
    tracing::info!(group, tag, what = what.what(), "requested from the agent");
    let wait = async {
        loop {
            // (Every published chunk, a tag too, wakes `durable`.)
            durable.borrow_and_update();
            if let Some(seq) = new_tag(&g, what.kind(), tag, &before) {
                return Ok(seq);
            }
            if let Some(why) = g.take_tag_refusal(tag) {
                return Err(DrainError::Refused {
                    group: group.into(),
                    what: what.what(),
                    why,
                });
            }
            if let Some(end) = ended.borrow_and_update().clone() {
                return Err(session_end(group, what, end));
            }
            tokio::select! {
                r = durable.changed() => {
                    if r.is_err() {
                        return Err(DrainError::SessionEnded {
                            group: group.into(),
                            what: what.what(),
                            why: "the group was closed".into(),
                        });
                    }
                }
                r = ended.changed() => {
                    if r.is_err() {
                        // The session is gone (its sender dropped): one last look at the tags.
                        if let Some(seq) = new_tag(&g, what.kind(), tag, &before) {
                            return Ok(seq);
                        }
                        return Err(DrainError::SessionEnded {
                            group: group.into(),
                            what: what.what(),
                            why: "the session closed".into(),
                        });
                    }
                }
                // A refused tag request wakes neither (it ends nothing): look again soon.
                () = tokio::time::sleep(REFUSAL_POLL) => {}
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(seq)) => {
            tracing::info!(group, tag, seq, what = what.what(), "the tag is durable");
            Ok(seq)
        }
        Ok(Err(e)) => {
            tracing::warn!(group, tag, error = %e, "{} failed", what.what());
            Err(e)
        }
        Err(_) => {
            // No promotion follows a failed drain: let the source take writes again.
            if what == Ask::Drain {
                if let Err(e) = registry::send_control(&g, ControlOp::Resume, tag) {
                    tracing::warn!(group, error = %e, "cannot ask the agent to resume after a drain timeout");
                }
            }
            let e = DrainError::Timeout {
                group: group.into(),
                what: what.what(),
                tag: tag.into(),
                timeout,
            };
            tracing::warn!(group, tag, error = %e, "{} failed", what.what());
            Err(e)
        }
    }
}

/// How often a tag request's waiter looks for a refusal.
const REFUSAL_POLL: Duration = Duration::from_millis(100);

fn session_end(group: &str, what: Ask, end: SessionEnd) -> DrainError {
    if end.by_agent {
        DrainError::Refused {
            group: group.into(),
            what: what.what(),
            why: end.message,
        }
    } else {
        DrainError::SessionEnded {
            group: group.into(),
            what: what.what(),
            why: end.message,
        }
    }
}

/// The durable tags of `kind` named `tag`, as (seq, timestamp).
fn tags_of(g: &Group, kind: TagKind, tag: &str) -> HashSet<(u64, u64)> {
    g.tags()
        .iter()
        .filter(|t| t.kind == kind && t.name == tag)
        .map(|t| (t.seq.0, t.timestamp_ms))
        .collect()
}

fn new_tag(g: &Group, kind: TagKind, tag: &str, before: &HashSet<(u64, u64)>) -> Option<u64> {
    tags_of(g, kind, tag)
        .into_iter()
        .filter(|k| !before.contains(k))
        .map(|(seq, _)| seq)
        .max()
}
