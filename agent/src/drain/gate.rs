//! The write gate: how a drain or a fence stops new writes at the capture while letting the
//! admitted ones finish.

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
    /// Closed for good: the group failed over (the target's reason); `open` does nothing.
    fenced: Option<String>,
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

    /// Refuses writes for good: `group` failed over and the target fenced this agent, saying
    /// `reason`.
    pub fn fence(&self, group: &str, reason: &str) {
        let mut st = self.lock();
        st.closed = Some(format!("group {group} was failed over: {reason}"));
        st.fenced = Some(reason.to_string());
    }

    /// The target's reason, once it fenced this agent.
    pub fn fenced(&self) -> Option<String> {
        self.lock().fenced.clone()
    }

    /// Admits writes again (unless fenced).
    pub fn open(&self) {
        let mut st = self.lock();
        if st.fenced.is_none() {
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
}
