//! Running verifies by (group, job id): where a session hands the agent's verify reports.
//!
//! Process-wide, like the counters of `crate::metrics`: the session that receives a report
//! (`crate::server::session`) and the job that waits for it (`crate::verify::run`) share no
//! other handle, and threading one through the store for this alone would tie the store to a
//! job it knows nothing of.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};

use rewind_formats::verify::VerifyReport;

type Waiters = HashMap<(String, u64), mpsc::Sender<VerifyReport>>;

fn waiters() -> MutexGuard<'static, Waiters> {
    static W: OnceLock<Mutex<Waiters>> = OnceLock::new();
    W.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A verify job's registration: its reports arrive on `rx`; dropped, it is forgotten.
pub(crate) struct Waiting {
    key: (String, u64),
    pub(crate) rx: mpsc::Receiver<VerifyReport>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        waiters().remove(&self.key);
    }
}

/// Registers job `job` of `group` for its reports.
pub(crate) fn wait_for(group: &str, job: u64) -> Waiting {
    let (tx, rx) = mpsc::channel();
    let key = (group.to_string(), job);
    waiters().insert(key.clone(), tx);
    Waiting { key, rx }
}

/// A report from the agent of `group` (CONTROL verify report). Reports of a job nobody waits
/// for (it ended, the target restarted) are dropped and logged: the session goes on.
pub(crate) fn deliver(group: &str, arg: &str) {
    let r = match VerifyReport::parse(arg) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(group, %why, "dropping the agent's verify report");
            return;
        }
    };
    let job = r.job;
    let sent = waiters()
        .get(&(group.to_string(), job))
        .is_some_and(|tx| tx.send(r).is_ok());
    if !sent {
        tracing::warn!(
            group,
            job,
            "a verify report for no running verify job: dropped"
        );
    }
}
