//! What the proxy did: faults injected by kind, connections and bytes forwarded.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::kind::FaultKind;

/// Shared by every connection of one proxy; read at any time with [`Counters::snapshot`].
#[derive(Default)]
pub struct Counters {
    injected: [AtomicU64; FaultKind::ALL.len()],
    /// Corruptions of the agent-to-target stream whose altered bytes were all forwarded (the
    /// target must reject each such connection's stream).
    corrupt_delivered_up: AtomicU64,
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub injected: [u64; FaultKind::ALL.len()],
    pub corrupt_delivered_up: u64,
    pub connections: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl Counters {
    pub(super) fn injected(&self, k: FaultKind) {
        self.injected[k.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn corrupt_delivered_up(&self) {
        self.corrupt_delivered_up.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn forwarded(&self, up: bool, n: usize) {
        let c = if up { &self.bytes_up } else { &self.bytes_down };
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            injected: std::array::from_fn(|i| self.injected[i].load(Ordering::Relaxed)),
            corrupt_delivered_up: self.corrupt_delivered_up.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Counts {
    pub fn of(&self, k: FaultKind) -> u64 {
        self.injected[k.index()]
    }

    pub fn total(&self) -> u64 {
        self.injected.iter().sum()
    }

    /// Adds another proxy's counts (a bench runs several proxies one after another).
    pub fn add(&mut self, o: &Counts) {
        for (a, b) in self.injected.iter_mut().zip(o.injected) {
            *a += b;
        }
        self.corrupt_delivered_up += o.corrupt_delivered_up;
        self.connections += o.connections;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
    }
}

impl fmt::Display for Counts {
    /// `cut=3 stall=1 ... (connections 9)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for k in FaultKind::ALL {
            write!(f, "{}={} ", k.name(), self.of(k))?;
        }
        write!(f, "(connections {})", self.connections)
    }
}
