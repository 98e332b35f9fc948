//! HASHES requests to the target, carried by the sender's session: the resync asks for the
//! target's block hashes of a range and waits for the answer.
//!
//! Requests survive a broken session: those sent but not answered go back to be sent again on
//! the next one. An answer reflects the target's durable state when it read the range, which
//! is all the resync needs (see [`crate::sync::pass`] for why any such state will do).

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

/// Who asked: the resync and the online verify ask through the same session, and each starts
/// its passes without disturbing the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    Sync = 0,
    Verify = 1,
}

#[derive(Default)]
struct Inner {
    /// Each lane's current pass: answers to an earlier pass's requests are dropped (they may
    /// predate bitmap mode or a target that lost data, where the resync's reasoning does not
    /// hold).
    pass: [u64; 2],
    to_send: VecDeque<(HashRequest, Lane)>,
    /// Sent and not answered, oldest first, with the lane and pass that asked. The target
    /// answers in the order asked, so the oldest entry for a range is the one an answer is for,
    /// whichever lane asked.
    sent: VecDeque<(HashRequest, Lane, u64)>,
    answers: HashMap<(Lane, u16, u64), Result<Vec<u64>, String>>,
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

    /// A new resync pass: nothing asked before counts any more.
    pub fn new_pass(&self) {
        self.new_pass_in(Lane::Sync);
    }

    /// A new pass of `lane`: nothing it asked before counts any more.
    pub fn new_pass_in(&self, lane: Lane) {
        let mut st = self.lock();
        st.pass[lane as usize] += 1;
        st.to_send.retain(|(_, l)| *l != lane);
        st.answers.retain(|(l, _, _), _| *l != lane);
    }

    /// Asks for the target's hashes of a range (the sender sends it at its next turn).
    pub fn request(&self, r: HashRequest) {
        self.request_in(Lane::Sync, r);
    }

    /// [`HashRequests::request`] for `lane`.
    pub fn request_in(&self, lane: Lane, r: HashRequest) {
        self.lock().to_send.push_back((r, lane));
    }

    /// Waits up to `timeout` for the answer to the request at (`disk`, `offset`): the hashes,
    /// or why the answer is unusable.
    pub fn wait(
        &self,
        disk: u16,
        offset: u64,
        timeout: Duration,
    ) -> Option<Result<Vec<u64>, String>> {
        self.wait_in(Lane::Sync, disk, offset, timeout)
    }

    /// [`HashRequests::wait`] for `lane`.
    pub fn wait_in(
        &self,
        lane: Lane,
        disk: u16,
        offset: u64,
        timeout: Duration,
    ) -> Option<Result<Vec<u64>, String>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(h) = st.answers.remove(&(lane, disk, offset)) {
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

    /// The sender's side: the requests to send now (they count as sent from here).
    pub fn take_unsent(&self) -> Vec<HashRequest> {
        let mut st = self.lock();
        let pass = st.pass;
        let out: Vec<(HashRequest, Lane)> = st.to_send.drain(..).collect();
        st.sent
            .extend(out.iter().map(|(r, l)| (*r, *l, pass[*l as usize])));
        out.into_iter().map(|(r, _)| r).collect()
    }

    /// The ACK reader's side: an answer arrived (answers come in the order asked). False if
    /// nothing asked for it.
    pub fn answer(&self, h: Hashes) -> bool {
        let mut st = self.lock();
        let Some(i) = st
            .sent
            .iter()
            .position(|(r, _, _)| r.disk == h.disk && r.offset == h.offset)
        else {
            return false;
        };
        let (r, lane, pass) = st.sent.remove(i).expect("found above");
        if pass != st.pass[lane as usize] {
            return true; // an earlier pass's: dropped
        }
        let answer = if h.hashes.len() != r.blocks as usize || h.block_size != r.block_size {
            Err(format!(
                "the target answered HASHES for disk {} offset {} with {} hashes of {} bytes; \
                 {} of {} were asked for",
                r.disk,
                r.offset,
                h.hashes.len(),
                h.block_size,
                r.blocks,
                r.block_size
            ))
        } else {
            Ok(h.hashes)
        };
        st.answers.insert((lane, h.disk, h.offset), answer);
        self.answered.notify_all();
        true
    }

    /// The session ended: what this pass sent and was not answered is sent again on the next
    /// one (an earlier pass's requests are forgotten).
    pub fn session_ended(&self) {
        let mut st = self.lock();
        let pass = st.pass;
        let sent: Vec<(HashRequest, Lane, u64)> = st.sent.drain(..).collect();
        for (r, lane, p) in sent.into_iter().rev() {
            if p == pass[lane as usize] {
                st.to_send.push_front((r, lane));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request every test starts from: the first two 4 KiB blocks of disk 0.
    fn first_two_blocks() -> HashRequest {
        HashRequest {
            disk: 0,
            offset: 0,
            block_size: 4096,
            blocks: 2,
        }
    }

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
        let a = first_two_blocks();
        let b = HashRequest { offset: 8192, ..a };
        h.request(a);
        h.request(b);
        assert_eq!(h.take_unsent(), vec![a, b]);
        assert!(h.answer(reply(&a)));
        h.session_ended();
        assert_eq!(h.take_unsent(), vec![b], "only the unanswered one again");
        assert!(!h.answer(reply(&a)), "a stray answer is refused");
        assert!(h.answer(reply(&b)));
        assert_eq!(h.wait(0, 0, Duration::ZERO), Some(Ok(vec![7, 7])));
        assert_eq!(h.wait(0, 8192, Duration::ZERO), Some(Ok(vec![7, 7])));
        assert_eq!(h.wait(0, 8192, Duration::ZERO), None);
        // A wrong answer is an error for the pass, not a wait forever.
        h.request(a);
        h.take_unsent();
        assert!(h.answer(Hashes {
            hashes: vec![1],
            ..reply(&a)
        }));
        assert!(matches!(h.wait(0, 0, Duration::ZERO), Some(Err(_))));
    }

    #[test]
    fn lanes_keep_their_answers_and_passes_apart() {
        let h = HashRequests::default();
        let a = first_two_blocks();
        h.request_in(Lane::Verify, a);
        h.request(a);
        assert_eq!(h.take_unsent(), vec![a, a]);
        // A resync pass starting does not drop the verify's request.
        h.new_pass();
        let mut first = reply(&a);
        first.hashes = vec![1, 1];
        assert!(
            h.answer(first),
            "the first answer is the verify's (asked first)"
        );
        assert!(
            h.answer(reply(&a)),
            "the second is the old sync pass's: dropped"
        );
        assert_eq!(h.wait(0, 0, Duration::ZERO), None);
        assert_eq!(
            h.wait_in(Lane::Verify, 0, 0, Duration::ZERO),
            Some(Ok(vec![1, 1]))
        );
    }

    #[test]
    fn an_earlier_pass_answers_are_dropped() {
        let h = HashRequests::default();
        let a = first_two_blocks();
        h.request(a);
        h.take_unsent();
        h.new_pass();
        h.request(a);
        h.take_unsent();
        let mut stale = reply(&a);
        stale.hashes = vec![1, 1];
        assert!(h.answer(stale), "the first answer is the first request's");
        assert_eq!(h.wait(0, 0, Duration::ZERO), None, "and is dropped");
        assert!(h.answer(reply(&a)));
        assert_eq!(h.wait(0, 0, Duration::ZERO), Some(Ok(vec![7, 7])));
    }
}
