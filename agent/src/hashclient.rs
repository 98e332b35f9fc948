//! HASHES requests to the target, carried by the sender's session: the resync asks for the
//! target's block hashes of a range and waits for the answer.
//!
//! Requests survive a broken session: those sent but not answered go back to be sent again on
//! the next one. An answer reflects the target's durable state when it read the range, which
//! is all the resync needs (see [`crate::sync`] for why any such state will do).

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rewind_formats::Hashes;

/// One range of one disk: `blocks` blocks of `block_size` bytes from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashRequest {
    pub disk: u16,
    pub offset: u64,
    pub block_size: u32,
    pub blocks: u32,
}

#[derive(Default)]
struct Inner {
    to_send: VecDeque<HashRequest>,
    sent: Vec<HashRequest>,
    answers: HashMap<(u16, u64), Vec<u64>>,
}

#[derive(Default)]
pub struct HashRequests {
    inner: Mutex<Inner>,
    answered: Condvar,
}

impl HashRequests {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for the target's hashes of a range (the sender sends it at its next turn).
    pub fn request(&self, r: HashRequest) {
        self.lock().to_send.push_back(r);
    }

    /// Waits up to `timeout` for the answer to the request at (`disk`, `offset`).
    pub fn wait(&self, disk: u16, offset: u64, timeout: Duration) -> Option<Vec<u64>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(h) = st.answers.remove(&(disk, offset)) {
                return Some(h);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .answered
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether requests wait to be sent.
    pub fn has_unsent(&self) -> bool {
        !self.lock().to_send.is_empty()
    }

    /// The sender's side: the requests to send now (they count as sent from here).
    pub fn take_unsent(&self) -> Vec<HashRequest> {
        let mut st = self.lock();
        let out: Vec<HashRequest> = st.to_send.drain(..).collect();
        st.sent.extend_from_slice(&out);
        out
    }

    /// The ACK reader's side: an answer arrived. False if nothing asked for it.
    pub fn answer(&self, h: Hashes) -> bool {
        let mut st = self.lock();
        let Some(i) = st
            .sent
            .iter()
            .position(|r| r.disk == h.disk && r.offset == h.offset)
        else {
            return false;
        };
        let r = st.sent.swap_remove(i);
        if h.hashes.len() != r.blocks as usize || h.block_size != r.block_size {
            return false;
        }
        st.answers.insert((h.disk, h.offset), h.hashes);
        self.answered.notify_all();
        true
    }

    /// The session ended: what was sent and not answered is sent again on the next one.
    pub fn session_ended(&self) {
        let mut st = self.lock();
        let sent: Vec<HashRequest> = st.sent.drain(..).collect();
        for r in sent.into_iter().rev() {
            st.to_send.push_front(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(r: &HashRequest) -> Hashes {
        Hashes {
            group: "g".into(),
            disk: r.disk,
            offset: r.offset,
            block_size: r.block_size,
            hashes: vec![7; r.blocks as usize],
        }
    }

    #[test]
    fn requests_are_resent_after_a_broken_session() {
        let h = HashRequests::default();
        let a = HashRequest {
            disk: 0,
            offset: 0,
            block_size: 4096,
            blocks: 2,
        };
        let b = HashRequest { offset: 8192, ..a };
        h.request(a);
        h.request(b);
        assert_eq!(h.take_unsent(), vec![a, b]);
        assert!(h.answer(reply(&a)));
        h.session_ended();
        assert_eq!(h.take_unsent(), vec![b], "only the unanswered one again");
        assert!(!h.answer(reply(&a)), "a stray answer is refused");
        assert!(h.answer(reply(&b)));
        assert_eq!(h.wait(0, 0, Duration::ZERO), Some(vec![7, 7]));
        assert_eq!(h.wait(0, 8192, Duration::ZERO), Some(vec![7, 7]));
        assert_eq!(h.wait(0, 8192, Duration::ZERO), None);
    }
}
