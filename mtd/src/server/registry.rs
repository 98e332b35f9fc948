//! The live sessions: which session feeds which group, how to send it a frame (CONTROL), how to
//! ask it to stop, and how to learn that it ended. A session sits in its groups' feeder slots
//! (`store::feeder`) as a [`Holder`]; the store only names it and tells it of a fence.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rewind_formats::message::{Control, ControlOp, ErrorCode};
use tokio::sync::{mpsc, watch};

use super::refusal::{refuse, Refusal};
use crate::store::feeder::Feeder;
use crate::store::fence::Fenced;
use crate::store::group::Group;

/// How long a reconnecting agent waits for its older session to let go of a group.
const SUPERSEDE_TIMEOUT: Duration = Duration::from_secs(10);

/// The session feeding a group: who it is, how to send it a frame, how to ask it to stop (when
/// the same agent reconnects before the daemon noticed its old connection die, or when the group
/// is fenced), and how to learn that it ended.
pub(crate) struct Holder {
    pub(crate) peer: String,
    pub(crate) agent: String,
    /// The agent's software version, from its HELLO (None: a version 1 HELLO has none).
    pub(crate) software: Option<String>,
    pub(crate) stop: Arc<StopSignal>,
    pub(crate) link: SessionLink,
}

/// What others get of a session: its outgoing frames and its end.
#[derive(Clone)]
pub(crate) struct SessionLink {
    /// The session's outgoing frames (its writer task sends them in order).
    pub(crate) out: mpsc::Sender<Vec<u8>>,
    /// Becomes `Some(why)` when the session ends (a dropped sender means the same).
    pub(crate) ended: watch::Receiver<Option<SessionEnd>>,
}

impl Feeder for Holder {
    fn agent(&self) -> &str {
        &self.agent
    }

    fn peer(&self) -> &str {
        &self.peer
    }

    fn software(&self) -> Option<&str> {
        self.software.as_deref()
    }

    /// The session ends with a Fenced ERROR saying why.
    fn fenced(&self, why: &Fenced) {
        let r = Refusal::from(why.clone());
        self.stop.stop(r.code, r.message);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// How a session ended, for whoever waits on it (a drain).
#[derive(Clone, Debug)]
pub(crate) struct SessionEnd {
    pub(crate) message: String,
    /// The agent sent an ERROR frame: `message` is its text.
    pub(crate) by_agent: bool,
}

/// Asks a session to end with an ERROR of a given code: the session sends it and closes.
#[derive(Default)]
pub(crate) struct StopSignal {
    notify: tokio::sync::Notify,
    why: Mutex<Option<(ErrorCode, String)>>,
}

impl StopSignal {
    /// Ask the session to end. The first reason given wins.
    pub(crate) fn stop(&self, code: ErrorCode, message: String) {
        self.why
            .lock()
            .expect("stop lock")
            .get_or_insert((code, message));
        // notify_one keeps a permit if the session is not waiting right now.
        self.notify.notify_one();
    }

    /// Resolves once `stop` was called.
    pub(crate) async fn stopped(&self) -> (ErrorCode, String) {
        loop {
            if let Some(w) = self.why.lock().expect("stop lock").clone() {
                return w;
            }
            self.notify.notified().await;
        }
    }
}

/// The session feeding `group`, if a session does.
fn holder(feeder: &Arc<dyn Feeder>) -> Option<&Holder> {
    feeder.as_any().downcast_ref::<Holder>()
}

/// Whether an agent's session feeds the group now.
pub(crate) fn connected(group: &Group) -> bool {
    group.feeder().is_some()
}

/// The link of the session feeding `group`, if one does.
pub(crate) fn link(group: &Group) -> Option<SessionLink> {
    holder(&group.feeder()?).map(|h| h.link.clone())
}

/// Send a CONTROL frame to the agent session currently feeding `group`.
pub(crate) fn send_control(group: &Group, op: ControlOp, arg: &str) -> Result<(), String> {
    let not_connected = || format!("no agent is connected for group {}", group.name);
    let out = link(group).ok_or_else(not_connected)?.out;
    let frame = Control::frame(&group.name, op, arg);
    // try_send: never wait on a session whose writer is stuck; its queue holds 256 frames.
    out.try_send(frame).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => format!(
            "the session of group {} is not draining its outgoing frames (queue full)",
            group.name
        ),
        mpsc::error::TrySendError::Closed(_) => not_connected(),
    })
}

/// Tell the source agent to take writes again after a drain that no promotion follows: now if
/// it is connected, else at its next session (see `Group::take_resume_owed`).
pub(crate) fn resume_source(group: &Group, tag: &str) {
    if let Err(e) = send_control(group, ControlOp::Resume, tag) {
        tracing::warn!(group = %group.name, error = %e, "resume owed to the agent at its next session");
        group.owe_resume(tag);
    }
}

/// A session's hold on a group: released when the session ends.
pub(crate) struct Claim {
    group: Arc<Group>,
    me: Arc<dyn Feeder>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.group.detach_feeder(&self.me);
    }
}

/// Take a group for a session. If the same agent still holds it through an older connection
/// (it reconnected before the daemon saw the old one die), that session is told to stop and this
/// one takes over; another agent's session makes this one Busy.
pub(crate) async fn claim(group: &Arc<Group>, me: Holder) -> Result<Claim, Refusal> {
    let (agent, peer) = (me.agent.clone(), me.peer.clone());
    let me: Arc<dyn Feeder> = Arc::new(me);
    let t0 = std::time::Instant::now();
    let mut asked = false;
    loop {
        let held = match group.attach_feeder(me.clone()) {
            Ok(()) => {
                return Ok(Claim {
                    group: group.clone(),
                    me,
                })
            }
            Err(held) => held,
        };
        if held.agent() != agent {
            // Another agent's session (a group without an owner, adopted): say so without
            // naming it.
            return Err(refuse(
                ErrorCode::Busy,
                format!("group {} is being fed by another agent", group.name),
            ));
        }
        if t0.elapsed() >= SUPERSEDE_TIMEOUT {
            return Err(refuse(
                ErrorCode::Busy,
                format!(
                    "group {} is still fed by an older session of this agent ({})",
                    group.name,
                    held.peer()
                ),
            ));
        }
        if !asked {
            tracing::info!(group = %group.name, %agent, old_peer = %held.peer(), new_peer = %peer,
                "agent reconnected: stopping its older session");
            if let Some(h) = holder(&held) {
                h.stop.stop(
                    ErrorCode::Busy,
                    "superseded: the same agent opened a new session".into(),
                );
            }
            asked = true;
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::group::test_group;
    use crate::store::manifest::Manifest;

    fn session(agent: &str, peer: &str) -> (Holder, mpsc::Receiver<Vec<u8>>) {
        let (out, rx) = mpsc::channel(4);
        let (_end_tx, ended) = watch::channel(None);
        let h = Holder {
            peer: peer.into(),
            agent: agent.into(),
            software: None,
            stop: Arc::new(StopSignal::default()),
            link: SessionLink { out, ended },
        };
        (h, rx)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn fence_bumps_the_generation_durably_and_stops_the_session() {
        let (_dir, g) = test_group();
        let (h, _rx) = session("a", "p");
        let stop = h.stop.clone();
        let claim = block_on(claim(&g, h)).unwrap();
        send_control(&g, ControlOp::Drain, "pf").unwrap();
        assert_eq!(g.fence("planned failover at seq 7").unwrap(), 2);
        let (code, why) = block_on(stop.stopped());
        assert_eq!(code, ErrorCode::Fenced);
        assert!(
            why.contains("fenced") && why.contains("planned failover at seq 7"),
            "{why}"
        );
        let m = Manifest::load(&g.dir).unwrap();
        assert_eq!(m.generation, 2);
        assert_eq!(
            m.fenced_reason.as_deref(),
            Some("planned failover at seq 7")
        );
        drop(claim);
        assert!(!connected(&g));
        assert_eq!(
            send_control(&g, ControlOp::Drain, "pf").unwrap_err(),
            "no agent is connected for group g"
        );
    }

    #[test]
    fn a_second_session_of_another_agent_is_busy_and_the_same_agent_supersedes() {
        let (_dir, g) = test_group();
        let (first, _rx1) = session("a", "p1");
        let first_stop = first.stop.clone();
        let first_claim = block_on(claim(&g, first)).unwrap();
        let (other, _rx2) = session("b", "p2");
        let r = block_on(claim(&g, other)).err().unwrap();
        assert_eq!(r.code, ErrorCode::Busy);
        assert_eq!(r.message, "group g is being fed by another agent");
        // The same agent again: its older session is asked to stop, and once it lets go the
        // new one holds the group.
        let (again, _rx3) = session("a", "p3");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let second = rt.block_on(async {
            let waiting = claim(&g, again);
            let release = async {
                let (code, why) = first_stop.stopped().await;
                assert_eq!(code, ErrorCode::Busy);
                assert!(why.contains("superseded"), "{why}");
                drop(first_claim);
            };
            let (second, ()) = tokio::join!(waiting, release);
            second
        });
        let _second = second.unwrap();
        assert_eq!(g.fed_by(), Some(("a".into(), "p3".into())));
    }
}
