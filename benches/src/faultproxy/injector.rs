//! When the next fault is due, shared by every connection of a proxy: the first chunk read in an
//! allowed direction after the due time takes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::counters::Counters;
use super::kind::FaultKind;
use super::plan::{Fault, Plan};

pub(super) struct Injector {
    enabled: AtomicBool,
    state: Mutex<State>,
    pub(super) counters: Arc<Counters>,
}

struct State {
    plan: Plan,
    rng: Xoshiro256PlusPlus,
    next_at: Instant,
}

impl Injector {
    pub(super) fn new(plan: Plan) -> Injector {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(plan.seed);
        let next_at = Instant::now() + plan.gap(&mut rng);
        Injector {
            enabled: AtomicBool::new(true),
            state: Mutex::new(State { plan, rng, next_at }),
            counters: Arc::default(),
        }
    }

    /// Turns injection on or off; when turned on, the next fault is a fresh gap away.
    pub(super) fn set_enabled(&self, on: bool) {
        if on {
            let mut st = self.lock();
            let st = &mut *st;
            st.next_at = Instant::now() + st.plan.gap(&mut st.rng);
        }
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// The fault for a chunk of `len` (> 0) bytes going `up` (agent to target) or down, if one
    /// is due; it is counted as injected.
    pub(super) fn take(&self, up: bool, len: usize) -> Option<Fault> {
        if len == 0 || !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let mut st = self.lock();
        let st = &mut *st;
        let now = Instant::now();
        if now < st.next_at || (!up && !st.plan.both_directions) {
            return None;
        }
        st.next_at = now + st.plan.gap(&mut st.rng);
        let f = st.plan.choose(&mut st.rng, len);
        self.counters.injected(f.kind());
        Some(f)
    }

    /// Replaces the kinds and directions (the seed's sequence goes on).
    pub(super) fn set_kinds(&self, kinds: Vec<FaultKind>, both_directions: bool) {
        let mut st = self.lock();
        st.plan.kinds = kinds;
        st.plan.both_directions = both_directions;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // (Nothing panics while holding it; a poisoned lock still holds a usable state.)
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
