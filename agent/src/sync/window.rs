//! The policy's sync window (`initial_sync_window`, a weekly schedule in UTC): when the initial
//! sync and resyncs may read the disks and send, and how fast. A pass asks before each region;
//! while the schedule's rate is 0 it waits (the writes it owes stay pinned, so nothing is lost:
//! the RPO grows, which the alerts show), otherwise it is throttled to the rate. Without a
//! policy, or with an unlimited window, passes run at full speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::policy::Rate;

use crate::error::{Error, Result};
use crate::policy::PolicyCtl;
use crate::stream::ratelimit::RateLimit;

/// How often a held pass looks at the schedule (and at stop).
const HOLD_POLL: Duration = Duration::from_millis(500);

/// The window and its throttle.
pub struct SyncWindow {
    policy: Arc<PolicyCtl>,
    limit: RateLimit,
}

impl SyncWindow {
    pub fn new(policy: Arc<PolicyCtl>) -> SyncWindow {
        SyncWindow {
            policy,
            limit: RateLimit::new(None),
        }
    }

    /// Returns once `bytes` of sync may be read and sent; `Err(Stopping)` if `stop` is set
    /// while held.
    pub fn admit(&self, bytes: u64, stop: &AtomicBool) -> Result<()> {
        let mut held = false;
        loop {
            match self.policy.sync_rate_now() {
                Rate::Unlimited => {
                    self.limit.set(None);
                    break;
                }
                Rate::BytesPerSec(0) => {
                    if !held {
                        tracing::info!(
                            "sync held: the policy's sync window allows none now (the regions \
                             stay pinned until it opens)"
                        );
                        held = true;
                    }
                    if stop.load(Ordering::SeqCst) {
                        return Err(Error::Stopping);
                    }
                    std::thread::sleep(HOLD_POLL);
                }
                Rate::BytesPerSec(n) => {
                    if self.limit.rate() != Some(n) {
                        self.limit.set(Some(n));
                    }
                    self.limit.take(bytes);
                    break;
                }
            }
        }
        if held {
            tracing::info!("sync window open: the sync goes on");
        }
        Ok(())
    }
}
