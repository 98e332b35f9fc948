//! Polling an agent's status file (`STATE_DIR/status.json`, rewritten every 200 ms) until it
//! shows what a test waits for. Only statuses written after the wait began count, so that a
//! stale file never satisfies a wait.

use std::path::Path;
use std::time::{Duration, Instant};

use rewind_formats::agent_status::{Status, SyncState};
use rewind_formats::AGENT_STATUS_FILE;
use rewind_linux::clock::now_ms;

use super::agent::Agent;

/// The agent's status file in `state`, parsed (formats owns its layout; an error while the agent
/// has not written it yet, or is replacing it).
pub fn read_status(state: &Path) -> Result<Status, String> {
    let p = state.join(AGENT_STATUS_FILE);
    let text = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))
}

impl Agent {
    pub fn status(&self) -> Status {
        read_status(&self.state).expect("agent status")
    }

    /// The first status written after this call.
    pub fn fresh_status(&self) -> Status {
        let since = now_ms();
        let t0 = Instant::now();
        loop {
            if let Ok(st) = read_status(&self.state) {
                if st.updated_ms > since {
                    return st;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the agent stopped writing its status"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the agent is connected, the target acknowledged everything recorded, and the
    /// sync is settled (done, not needed, or failed), as seen in a status written after this
    /// call.
    pub fn wait_caught_up(&self, limit: Duration) -> Status {
        wait_caught_up_at(&self.state, limit, &|| self.log_text())
    }

    /// Waits up to `limit` for a status (written after this call) that satisfies `ok`.
    pub fn wait_status(&self, limit: Duration, ok: impl Fn(&Status) -> bool) -> Status {
        let since = now_ms();
        let t0 = Instant::now();
        loop {
            if let Ok(st) = read_status(&self.state) {
                if st.updated_ms > since && ok(&st) {
                    return st;
                }
            }
            assert!(
                t0.elapsed() < limit,
                "agent status not as expected within {limit:?}: {:?}\n{}",
                read_status(&self.state).ok(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// [`Agent::wait_caught_up`] for any agent's state dir (one this harness did not start: a
/// reverse-replication agent run by rewind-mtd, say); `log` is shown on failure.
pub fn wait_caught_up_at(state: &Path, limit: Duration, log: &dyn Fn() -> String) -> Status {
    let since = now_ms();
    let t0 = Instant::now();
    loop {
        if let Ok(st) = read_status(state) {
            let settled = !matches!(
                st.sync,
                SyncState::Pending | SyncState::Running | SyncState::Acking | SyncState::Bitmap
            ) && !st.bitmap_mode
                && st.pinned_regions == 0;
            if st.updated_ms > since
                && st.connected
                && st.caught_up
                && st.acked_seq == st.last_seq
                && settled
            {
                return st;
            }
        }
        assert!(
            t0.elapsed() < limit,
            "agent did not catch up within {limit:?}: {:?}\n{}",
            read_status(state).ok(),
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
