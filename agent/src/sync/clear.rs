//! Clearing the dirty-region map behind the target's acknowledgements: the acknowledged seq is
//! written to the state dir first, durably, and only then are the regions it covers cleared (a
//! target found below it later has lost acknowledged data). Behind a relay, "acknowledged" is
//! what the master target holds, not what the relay cached: a relay that dies before forwarding
//! leaves those writes only on the source disk, and their regions dirty is how they come back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::state::StateDir;
use crate::stream::queue::Queue;
use crate::sync::dirty::DirtyMap;

/// How often acknowledged regions are cleared in the dirty-region map, and how long after
/// their acknowledgement (a region written again soon stays dirty: no fdatasync to set it).
const CLEAR_INTERVAL: Duration = Duration::from_secs(1);
const CLEAR_DELAY_PASSES: usize = 2;

/// The thread that clears acknowledged regions, a few seconds after their acknowledgement.
pub struct Clearer {
    /// Where the acknowledged seq is kept.
    pub state: StateDir,
    pub queue: Arc<Queue>,
    pub dirty: Arc<DirtyMap>,
    pub stop: Arc<AtomicBool>,
}

impl Clearer {
    pub fn run(self) {
        let mut written = None;
        let mut acked_history = VecDeque::new();
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(CLEAR_INTERVAL);
            let q = self.queue.stats();
            acked_history.push_back(q.target_acked);
            // First the acknowledged seq, durably; only then regions it covers may be cleared.
            if let Some(base) = q.base {
                let wire = base.wire(q.target_acked);
                if written != Some(wire) {
                    match self.state.write_acked(wire) {
                        Ok(()) => written = Some(wire),
                        Err(e) => {
                            tracing::warn!(error = %e, "recording the acknowledged seq");
                            written = None;
                        }
                    }
                }
            }
            if acked_history.len() <= CLEAR_DELAY_PASSES {
                continue;
            }
            let acked = acked_history.pop_front().expect("history is not empty");
            if written.is_none() {
                continue;
            }
            if let Err(e) = self.dirty.clear_acked(acked) {
                tracing::warn!(error = %e, "clearing the dirty-region map");
            }
        }
    }
}

/// At shutdown, once the threads have ended: as the clear thread does, the acknowledged seq
/// first, then every region it covers (no delay: nothing writes any more), then the map synced.
pub fn save_at_exit(state: &StateDir, queue: &Queue, dirty: &DirtyMap) -> Result<()> {
    let q = queue.stats();
    if let Some(base) = q.base {
        state.write_acked(base.wire(q.target_acked))?;
        dirty.clear_acked(q.target_acked)?;
    }
    dirty.sync()
}
