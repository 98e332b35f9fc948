//! Overlapping writes are captured one after the other.
//!
//! Writes arrive in parallel (async direct IO). Two in flight at once over the same bytes could
//! reach the backing disk in one order and get their seqs in the other, and the replica would end
//! with different bytes than the source. So a write waits while an overlapping one is in flight:
//! for any bytes, the order of pwrites is the order of seqs. Writes that do not overlap (nearly
//! all of them) pass straight through; the table is as long as the queue depth.
//!
//! A claim owns a reference to its table, so it can travel with an asynchronous write to the
//! thread that completes it, and is released there once the write's seq is assigned.

use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
pub struct InFlight {
    ranges: Mutex<Table>,
    done: Condvar,
}

#[derive(Default)]
struct Table {
    ranges: Vec<(u16, u64, u64)>,
    /// Claims waiting: a release wakes them only if there are any (saves a futex call per
    /// write, as nearly all writes never wait).
    waiting: usize,
}

/// A write's claim on its range; released when dropped.
pub struct Claim {
    table: Arc<InFlight>,
    range: (u16, u64, u64),
}

impl InFlight {
    /// Claims `[offset, offset + len)` of `disk`, waiting while an overlapping claim is held.
    pub fn claim(self: &Arc<Self>, disk: u16, offset: u64, len: u64) -> Claim {
        let end = offset.saturating_add(len);
        let overlaps = |r: &(u16, u64, u64)| r.0 == disk && r.1 < end && offset < r.2;
        let mut t = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        while t.ranges.iter().any(overlaps) {
            t.waiting += 1;
            t = self.done.wait(t).unwrap_or_else(|e| e.into_inner());
            t.waiting -= 1;
        }
        t.ranges.push((disk, offset, end));
        Claim {
            table: Arc::clone(self),
            range: (disk, offset, end),
        }
    }
}

impl InFlight {
    /// [`InFlight::claim`] without waiting: `None` while an overlapping claim is held (for a
    /// thread that must not block, such as one that also completes the holders' writes).
    pub fn try_claim(self: &Arc<Self>, disk: u16, offset: u64, len: u64) -> Option<Claim> {
        let end = offset.saturating_add(len);
        let mut t = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        if t.ranges
            .iter()
            .any(|r| r.0 == disk && r.1 < end && offset < r.2)
        {
            return None;
        }
        t.ranges.push((disk, offset, end));
        Some(Claim {
            table: Arc::clone(self),
            range: (disk, offset, end),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut t = self.table.ranges.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = t.ranges.iter().position(|r| *r == self.range) {
            t.ranges.swap_remove(i);
        }
        let wake = t.waiting > 0;
        drop(t);
        if wake {
            self.table.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn overlapping_claims_wait_and_others_pass() {
        let t = Arc::new(InFlight::default());
        let a = t.claim(0, 0, 8192);
        let _b = t.claim(0, 8192, 4096); // adjacent: no overlap
        let _c = t.claim(1, 0, 8192); // another disk
        let t2 = Arc::clone(&t);
        let waiter = std::thread::spawn(move || {
            let _d = t2.claim(0, 4096, 4096);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "an overlapping claim waits");
        drop(a);
        waiter.join().unwrap();
    }
}
