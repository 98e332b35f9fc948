//! Drain and fencing, as the source agent sees them.
//!
//! Planned failover: the target sends CONTROL Drain (arg: a tag name). From that moment the
//! capture refuses new writes ([`WriteGate`]: EROFS), the writes already in flight finish and are
//! captured, a running sync finishes, and a Failover tag with that name is queued after the last
//! captured record. Once the target acknowledges it, the replica at the tag equals the disks here.
//! The agent's drain thread (see `agent.rs`) does the work; the session's reader only records
//! the request here ([`DrainCtl`]).
//!
//! Fencing: once the group fails over, the target refuses this agent with a StaleGeneration
//! ERROR. The agent then stops reconnecting, keeps refusing writes, and leaves
//! `STATE_DIR/GROUP.fenced` (the reason) so that it does not start again as the group's source.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};

/// Lets writes into the capture while open; once closed, refuses new ones and tells when the
/// ones already admitted have finished (recorded in the queue, or failed).
#[derive(Default)]
pub struct WriteGate {
    st: Mutex<GateState>,
    idle: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Why writes are refused (`None`: open).
    closed: Option<String>,
    /// Closed for good: the group failed over; `open` does nothing.
    fenced: bool,
    /// Writes admitted and not finished.
    active: u64,
}

/// One admitted write; dropping it (after the write is recorded or failed) finishes it.
pub struct GatePass {
    gate: Arc<WriteGate>,
}

impl Drop for GatePass {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        st.active -= 1;
        if st.active == 0 {
            self.gate.idle.notify_all();
        }
    }
}

impl WriteGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a write, or refuses it (`Error::ReadOnly`) once the gate is closed.
    pub fn enter(self: &Arc<Self>) -> Result<GatePass> {
        let mut st = self.lock();
        if let Some(why) = &st.closed {
            return Err(Error::ReadOnly(why.clone()));
        }
        st.active += 1;
        Ok(GatePass {
            gate: Arc::clone(self),
        })
    }

    /// Refuses writes from now on (a first reason stays: fencing does not hide a drain).
    pub fn close(&self, why: &str) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(why.to_string());
        }
    }

    /// Refuses writes for good (the group failed over; this agent is fenced).
    pub fn fence(&self, why: &str) {
        let mut st = self.lock();
        st.closed = Some(why.to_string());
        st.fenced = true;
    }

    /// Admits writes again (unless fenced).
    pub fn open(&self) {
        let mut st = self.lock();
        if !st.fenced {
            st.closed = None;
        }
    }

    #[cfg(test)]
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Waits up to `timeout` until no admitted write is running; true if none is.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .idle
            .wait_timeout_while(st, timeout, |s| s.active > 0)
            .unwrap_or_else(|e| e.into_inner());
        st.active == 0
    }
}

/// Where a drain stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainState {
    Idle,
    /// Asked for (by the target) and being done by the drain thread.
    Draining {
        tag: String,
    },
    /// The tag is acknowledged by the target; writes stay refused.
    Drained {
        tag: String,
        seq: u64,
    },
}

/// The drain request shared by the session's reader (which records requests) and the drain
/// thread (which does them).
pub struct DrainCtl {
    st: Mutex<DrainInner>,
    changed: Condvar,
}

struct DrainInner {
    state: DrainState,
    /// Bumped by every request and resume: a drain thread working on an older one gives up.
    epoch: u64,
    /// A drain asked to be done again (the same name, already drained): the tag is sent again.
    resend: bool,
}

impl Default for DrainCtl {
    fn default() -> Self {
        DrainCtl {
            st: Mutex::new(DrainInner {
                state: DrainState::Idle,
                epoch: 0,
                resend: false,
            }),
            changed: Condvar::new(),
        }
    }
}

impl DrainCtl {
    fn lock(&self) -> MutexGuard<'_, DrainInner> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> DrainState {
        self.lock().state.clone()
    }

    /// The target asks for a drain tagged `tag`. A second request for the drain in progress
    /// changes nothing; one for a drain already done has its tag sent again (the target waits
    /// for a tag that arrives after its request); a new name after a finished drain tags the
    /// same last seq again. Refused while a drain under another name runs.
    pub fn request(&self, tag: &str) -> std::result::Result<(), String> {
        let mut st = self.lock();
        match &st.state {
            DrainState::Draining { tag: t } if t == tag => return Ok(()),
            DrainState::Draining { tag: t } => {
                return Err(format!(
                    "a drain tagged {t:?} is in progress; cannot drain as {tag:?} too"
                ))
            }
            DrainState::Drained { tag: t, .. } if t == tag => st.resend = true,
            DrainState::Drained { .. } | DrainState::Idle => {}
        }
        st.state = DrainState::Draining {
            tag: tag.to_string(),
        };
        st.epoch += 1;
        self.changed.notify_all();
        Ok(())
    }

    /// The target gave up on the drain (CONTROL Resume): back to idle, writes admitted again
    /// (unless fenced). Returns whether a drain was running or done.
    pub fn resume(&self, gate: &WriteGate) -> bool {
        let mut st = self.lock();
        let was = st.state != DrainState::Idle;
        st.state = DrainState::Idle;
        st.epoch += 1;
        st.resend = false;
        // Under the drain lock: a drain thread closing the gate for an older epoch cannot
        // close it after this.
        gate.open();
        self.changed.notify_all();
        was
    }

    /// Starts the drain of `epoch`: closes the gate, unless the drain was given up meanwhile.
    pub fn begin(&self, epoch: u64, gate: &WriteGate, tag: &str) -> bool {
        let st = self.lock();
        if st.epoch != epoch {
            return false;
        }
        gate.close(&format!("the group is drained for a failover (tag {tag})"));
        true
    }

    /// Waits up to `timeout` for a drain to do: its tag, epoch, and whether the tag only has to
    /// be sent again.
    pub fn next(&self, timeout: Duration) -> Option<(String, u64, bool)> {
        let st = self.lock();
        let (mut st, _) = self
            .changed
            .wait_timeout_while(st, timeout, |s| {
                !matches!(s.state, DrainState::Draining { .. })
            })
            .unwrap_or_else(|e| e.into_inner());
        match st.state.clone() {
            DrainState::Draining { tag } => {
                let resend = std::mem::take(&mut st.resend);
                Some((tag, st.epoch, resend))
            }
            _ => None,
        }
    }

    /// Whether the drain of `epoch` is still the one asked for.
    pub fn current(&self, epoch: u64) -> bool {
        self.lock().epoch == epoch
    }

    /// The drain of `epoch` is done: its tag is acknowledged at `seq`.
    pub fn done(&self, epoch: u64, tag: &str, seq: u64) {
        let mut st = self.lock();
        if st.epoch == epoch {
            st.state = DrainState::Drained {
                tag: tag.to_string(),
                seq,
            };
            self.changed.notify_all();
        }
    }

    /// The drain of `epoch` failed: back to idle, writes admitted again (no failover follows).
    pub fn failed(&self, epoch: u64, gate: &WriteGate) {
        let mut st = self.lock();
        if st.epoch == epoch {
            st.state = DrainState::Idle;
            gate.open();
            self.changed.notify_all();
        }
    }
}

/// `STATE_DIR/GROUP.fenced`: the target fenced this agent for the group (it failed over).
pub fn fenced_file(state_dir: &Path, group: &str) -> PathBuf {
    crate::state::files::group_file(state_dir, group, "fenced")
}

/// The reason in a fenced file, if there is one.
pub fn read_fenced(state_dir: &Path, group: &str) -> Option<String> {
    let p = fenced_file(state_dir, group);
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether a refusal from the target fences this agent: a StaleGeneration whose message says
/// "fenced" (the target says so when the group is at a newer generation; an agent ahead of the
/// target gets a StaleGeneration without it, and keeps retrying).
pub fn is_fencing(e: &Error) -> Option<&str> {
    match e {
        Error::Remote {
            code: rewind_formats::ErrorCode::StaleGeneration,
            message,
        } if message.contains("fenced") => Some(message),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_refuses_and_waits_for_admitted_writes() {
        let g = Arc::new(WriteGate::default());
        let pass = g.enter().unwrap();
        g.close("drain");
        assert!(matches!(g.enter(), Err(Error::ReadOnly(_))));
        assert!(!g.wait_idle(Duration::from_millis(10)));
        drop(pass);
        assert!(g.wait_idle(Duration::from_millis(10)));
        g.open();
        assert!(g.enter().is_ok());
    }

    #[test]
    fn drain_requests_are_idempotent_by_name() {
        let d = DrainCtl::default();
        d.request("pf").unwrap();
        d.request("pf").unwrap();
        assert!(d.request("other").is_err());
        let (tag, epoch, resend) = d.next(Duration::ZERO).unwrap();
        assert_eq!((tag.as_str(), resend), ("pf", false));
        d.done(epoch, "pf", 7);
        assert_eq!(
            d.state(),
            DrainState::Drained {
                tag: "pf".into(),
                seq: 7
            }
        );
        d.request("pf").unwrap();
        let (_, _, resend) = d.next(Duration::ZERO).unwrap();
        assert!(resend, "the tag of a finished drain is sent again");
        let g = WriteGate::default();
        assert!(d.begin(epoch + 1, &g, "pf"));
        assert!(g.is_closed());
        assert!(d.resume(&g));
        assert!(!g.is_closed(), "resume admits writes again");
        assert!(d.next(Duration::ZERO).is_none());
        g.fence("failed over");
        g.open();
        assert!(g.is_closed(), "a fenced gate stays closed");
    }
}
