//! Which target the sender uses: the agent lists one or more (`--target`, repeatable; `targets`
//! in the config file), relays or the master target itself, and tries them in order. After
//! [`ATTEMPTS_PER_TARGET`] attempts in a row that fail (no connection, a refusal, or a lost
//! session that does not come back), it moves to the next one, wrapping around. A session that
//! gets its WELCOME starts the count over.
//!
//! Moving is safe only with the group's epoch (see [`crate::state::epoch`]): the target then
//! refuses the path the agent left, whatever that path still holds.

use std::sync::Mutex;

use crate::config::TargetAddr;

/// Failed attempts in a row before the sender moves to the next target.
pub const ATTEMPTS_PER_TARGET: u32 = 3;

/// The targets, the one in use, and how many attempts at it failed in a row.
pub struct Targets {
    list: Vec<TargetAddr>,
    state: Mutex<(usize, u32)>,
}

impl Targets {
    /// # Panics
    /// If `list` is empty (the settings always hold one).
    pub fn new(list: Vec<TargetAddr>) -> Targets {
        assert!(!list.is_empty(), "at least one target");
        Targets {
            list,
            state: Mutex::new((0, 0)),
        }
    }

    /// The target to try now.
    pub fn current(&self) -> &TargetAddr {
        &self.list[self.state.lock().expect("targets lock").0]
    }

    /// A session got its WELCOME: the count of failures starts over.
    pub fn welcomed(&self) {
        self.state.lock().expect("targets lock").1 = 0;
    }

    /// An attempt failed (or a session ended). Returns the next target when this was the last
    /// attempt at the current one (and there is another).
    pub fn failed(&self) -> Option<&TargetAddr> {
        let mut st = self.state.lock().expect("targets lock");
        st.1 += 1;
        if st.1 < ATTEMPTS_PER_TARGET || self.list.len() == 1 {
            return None;
        }
        *st = ((st.0 + 1) % self.list.len(), 0);
        Some(&self.list[st.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TargetAddr {
        TargetAddr::parse(s).unwrap()
    }

    #[test]
    fn three_failures_move_to_the_next_target_and_the_list_wraps_around() {
        let ts = Targets::new(vec![t("unix:/a"), t("unix:/b")]);
        assert_eq!(ts.current(), &t("unix:/a"));
        assert_eq!(ts.failed(), None);
        assert_eq!(ts.failed(), None);
        assert_eq!(ts.failed(), Some(&t("unix:/b")));
        assert_eq!(ts.current(), &t("unix:/b"));
        // A WELCOME starts the count over.
        ts.failed();
        ts.failed();
        ts.welcomed();
        assert_eq!(ts.failed(), None);
        assert_eq!(ts.failed(), None);
        assert_eq!(ts.failed(), Some(&t("unix:/a")), "wraps around");
    }

    #[test]
    fn a_single_target_is_kept_whatever_happens() {
        let ts = Targets::new(vec![t("unix:/a")]);
        for _ in 0..10 {
            assert_eq!(ts.failed(), None);
        }
        assert_eq!(ts.current(), &t("unix:/a"));
    }
}
