//! Store health: whether writes are flowing, paused for space, or stopped for good.
//!
//! ENOSPC pauses acknowledgements until space is freed (nothing is dropped). An fsync or EIO failure
//! is fatal for the store: after a failed fsync the kernel may have dropped dirty pages, so retrying
//! could acknowledge data that is not on disk.

use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq)]
enum HealthState {
    Ok,
    NoSpace { detail: String },
    Failed { detail: String },
}

#[derive(Debug)]
pub(crate) struct Health(Mutex<HealthState>);

impl Default for Health {
    fn default() -> Self {
        Health(Mutex::new(HealthState::Ok))
    }
}

impl Health {
    /// The state's name for monitoring: `ok`, `no_space` or `failed`.
    pub(crate) fn state_name(&self) -> &'static str {
        match &*self.0.lock().expect("health lock") {
            HealthState::Ok => "ok",
            HealthState::NoSpace { .. } => "no_space",
            HealthState::Failed { .. } => "failed",
        }
    }

    pub(crate) fn failed(&self) -> Option<String> {
        match &*self.0.lock().expect("health lock") {
            HealthState::Failed { detail } => Some(detail.clone()),
            _ => None,
        }
    }

    /// Report that writes are paused for lack of space (logged once per episode).
    pub(crate) fn no_space(&self, detail: String) {
        let mut s = self.0.lock().expect("health lock");
        if matches!(*s, HealthState::Ok) {
            tracing::error!("no space left: {detail}; replication is paused and nothing is acknowledged until space is freed");
            *s = HealthState::NoSpace { detail };
        }
    }

    /// Writes flow again after a pause.
    pub(crate) fn recovered(&self) {
        let mut s = self.0.lock().expect("health lock");
        if matches!(*s, HealthState::NoSpace { .. }) {
            tracing::warn!("space available again: replication resumes");
            *s = HealthState::Ok;
        }
    }

    pub(crate) fn fail(&self, detail: String) {
        let mut s = self.0.lock().expect("health lock");
        if !matches!(*s, HealthState::Failed { .. }) {
            tracing::error!("store failed, accepting no more writes: {detail}");
            *s = HealthState::Failed { detail };
        }
    }
}
