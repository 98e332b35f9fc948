//! The cache's size limit (`--cache-size`), shared by every group: an agent's frame is taken in
//! only when it fits. A full cache does not read from the agent, so the agent gets no more ACKs,
//! spools and then falls back to its bitmap, as it does when the target is slow: nothing is
//! dropped. Room comes back when the master target acknowledges and segments are freed.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

pub(crate) struct Space {
    limit: u64,
    used: AtomicU64,
    freed: Notify,
}

impl Space {
    pub(crate) fn new(limit: u64, used: u64) -> Space {
        Space {
            limit,
            used: AtomicU64::new(used),
            freed: Notify::new(),
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `n` more bytes fit now (taking them if so). One frame always fits an empty cache,
    /// so that a limit below a frame's size slows replication down instead of stopping it.
    fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u == 0 || u + n <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    /// Take `n` bytes, waiting for room; `full` is called once if it has to wait.
    pub(crate) async fn take(&self, n: u64, full: impl FnOnce()) {
        let mut full = Some(full);
        loop {
            let freed = self.freed.notified();
            if self.try_take(n) {
                return;
            }
            if let Some(f) = full.take() {
                f();
            }
            freed.await;
        }
    }

    /// Count bytes already in the cache (found at start).
    pub(crate) fn account(&self, n: u64) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_waits_until_room_is_given_back() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = std::sync::Arc::new(Space::new(100, 0));
        rt.block_on(async {
            s.take(80, || panic!("room for 80")).await;
            let s2 = s.clone();
            let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let w2 = waited.clone();
            let t = tokio::spawn(async move {
                s2.take(30, || w2.store(true, Ordering::SeqCst)).await;
            });
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert!(!t.is_finished(), "80 + 30 > 100 must wait");
            assert!(waited.load(Ordering::SeqCst));
            s.give_back(80);
            t.await.unwrap();
            assert_eq!(s.used(), 30);
        });
    }
}
