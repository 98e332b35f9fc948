//! The drain request: recorded by the session's reader (CONTROL frames), done by the drain
//! thread, shown in the status file.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rewind_formats::Seq;

use super::gate::WriteGate;

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
        seq: Seq,
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
    pub fn request(&self, tag: &str) -> Result<(), String> {
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
    pub fn done(&self, epoch: u64, tag: &str, seq: Seq) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_requests_are_idempotent_by_name() {
        let d = DrainCtl::default();
        d.request("pf").unwrap();
        d.request("pf").unwrap();
        assert!(d.request("other").is_err());
        let (tag, epoch, resend) = d.next(Duration::ZERO).unwrap();
        assert_eq!((tag.as_str(), resend), ("pf", false));
        d.done(epoch, "pf", Seq(7));
        assert_eq!(
            d.state(),
            DrainState::Drained {
                tag: "pf".into(),
                seq: Seq(7)
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
        g.fence("g", "failed over");
        g.open();
        assert!(g.is_closed(), "a fenced gate stays closed");
    }
}
