//! How the sync stands: written by the sync thread (and its passes), read by the status writer
//! and the drain thread.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::state::status::SyncState;
use crate::stream::loss::Repair;

/// Progress of one disk's current pass, read by the status writer.
#[derive(Default)]
pub struct SyncProgress {
    /// Bytes of this pass's regions done.
    pub done_bytes: AtomicU64,
    /// Bytes of the regions this pass covers.
    pub total_bytes: AtomicU64,
    /// Bytes of data queued by every pass of this run (holes, zeros and equal blocks are not).
    pub sent_bytes: AtomicU64,
    /// Regions compared with the target's hashes (HASHES) by every pass of this run.
    pub compared_regions: AtomicU64,
    /// Regions resent whole without a compare (after a relay lost what it acknowledged).
    pub resent_regions: AtomicU64,
}

/// The sync thread's state, as others see it.
#[derive(Clone, Copy, Debug)]
pub struct SyncInfo {
    pub state: SyncState,
    /// The tag name of the pass running or last run (`initial-sync` or `resync`).
    pub kind: Option<&'static str>,
    /// When the pass started reading, and when it finished (for its rate).
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
    /// How the last loss at the target was repaired (see [`crate::stream::loss`]).
    pub last_loss: Option<Repair>,
}

/// [`SyncInfo`] behind a lock: one snapshot for each reader.
pub struct SyncStatus(Mutex<SyncInfo>);

impl Default for SyncStatus {
    fn default() -> Self {
        SyncStatus(Mutex::new(SyncInfo {
            state: SyncState::Pending,
            kind: None,
            started: None,
            ended: None,
            last_loss: None,
        }))
    }
}

impl SyncStatus {
    fn lock(&self) -> MutexGuard<'_, SyncInfo> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> SyncInfo {
        *self.lock()
    }

    pub fn set_state(&self, state: SyncState) {
        self.lock().state = state;
    }

    /// The sender found a loss at the target, to be repaired so.
    pub fn target_lost(&self, repair: Repair) {
        self.lock().last_loss = Some(repair);
    }

    /// A pass of `kind` starts reading.
    pub fn started(&self, kind: &'static str) {
        let mut st = self.lock();
        st.state = SyncState::Running;
        st.kind = Some(kind);
        st.started = Some(Instant::now());
        st.ended = None;
    }

    /// The pass has read everything it will.
    pub fn ended(&self) {
        self.lock().ended = Some(Instant::now());
    }
}
