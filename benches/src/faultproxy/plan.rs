//! What a proxy injects and how often: the fault kinds, the mean gap between two faults, the
//! seed, and the bounds of each fault's parameters; and the random choice of the next fault.

use std::time::Duration;

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::kind::FaultKind;

/// The faults a proxy injects.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The kinds to choose from (uniformly).
    pub kinds: Vec<FaultKind>,
    /// Mean time between two faults; each gap is uniform in [mean/2, 3 mean/2].
    pub mean_gap: Duration,
    /// Seed of the proxy's random choices (kinds, gaps, positions, durations).
    pub seed: u64,
    /// Also inject into the target-to-agent stream (ACKs, WELCOME); else only agent to target.
    pub both_directions: bool,
    /// Longest stall. Longer than the agent's dead-peer timeout (30 s) makes it reconnect.
    pub max_stall: Duration,
}

impl Plan {
    /// `kinds` every `mean_gap` or so, in both directions, stalls of at most 5 s.
    pub fn new(kinds: Vec<FaultKind>, mean_gap: Duration, seed: u64) -> Plan {
        Plan {
            kinds,
            mean_gap,
            seed,
            both_directions: true,
            max_stall: Duration::from_secs(5),
        }
    }

    /// The wait before the next fault.
    pub(super) fn gap(&self, rng: &mut Xoshiro256PlusPlus) -> Duration {
        let ms = self.mean_gap.as_millis().max(2) as u64;
        Duration::from_millis(rng.gen_range(ms / 2..=ms * 3 / 2))
    }

    /// A fault of a random enabled kind, with random parameters, for a chunk of `len` bytes.
    pub(super) fn choose(&self, rng: &mut Xoshiro256PlusPlus, len: usize) -> Fault {
        let kind = self.kinds[rng.gen_range(0..self.kinds.len())];
        let window = || Duration::from_millis(1000);
        match kind {
            FaultKind::Cut => Fault::Cut,
            FaultKind::Stall => {
                let max = self.max_stall.as_millis().max(100) as u64;
                Fault::Stall(Duration::from_millis(rng.gen_range(100..=max)))
            }
            FaultKind::Latency => Fault::Latency {
                per_chunk: Duration::from_millis(rng.gen_range(5..=100)),
                window: window() * rng.gen_range(1..=4),
            },
            FaultKind::Bandwidth => Fault::Bandwidth {
                bytes_per_sec: rng.gen_range(64 << 10..=1 << 20),
                window: window() * rng.gen_range(1..=4),
            },
            FaultKind::Truncate => Fault::Truncate {
                keep: rng.gen_range(0..len),
            },
            FaultKind::Duplicate => {
                let start = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - start).min(4096));
                Fault::Duplicate { start, len: n }
            }
            FaultKind::Corrupt => {
                let flips = (0..rng.gen_range(1..=3))
                    .map(|_| (rng.gen_range(0..len), rng.gen_range(1..=255u8)))
                    .collect();
                Fault::Corrupt { flips }
            }
        }
    }
}

/// One fault, with its parameters, applied to one chunk (and what follows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    Cut,
    Stall(Duration),
    Latency {
        per_chunk: Duration,
        window: Duration,
    },
    Bandwidth {
        bytes_per_sec: u64,
        window: Duration,
    },
    /// Forward the first `keep` bytes of the chunk, then cut.
    Truncate {
        keep: usize,
    },
    /// Forward `chunk[..start + len]`, then `chunk[start..]`: `len` bytes twice.
    Duplicate {
        start: usize,
        len: usize,
    },
    /// XOR these bytes of the chunk with these (non-zero) values.
    Corrupt {
        flips: Vec<(usize, u8)>,
    },
}

impl Fault {
    pub(super) fn kind(&self) -> FaultKind {
        match self {
            Fault::Cut => FaultKind::Cut,
            Fault::Stall(_) => FaultKind::Stall,
            Fault::Latency { .. } => FaultKind::Latency,
            Fault::Bandwidth { .. } => FaultKind::Bandwidth,
            Fault::Truncate { .. } => FaultKind::Truncate,
            Fault::Duplicate { .. } => FaultKind::Duplicate,
            Fault::Corrupt { .. } => FaultKind::Corrupt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_fault_fits_its_chunk() {
        let plan = Plan::new(FaultKind::ALL.to_vec(), Duration::from_millis(100), 7);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let len = 1 + i % 70_000;
            let f = plan.choose(&mut rng, len);
            seen.insert(f.kind());
            match f {
                Fault::Truncate { keep } => assert!(keep < len),
                Fault::Duplicate { start, len: n } => assert!(n >= 1 && start + n <= len),
                Fault::Corrupt { flips } => {
                    assert!(!flips.is_empty() && flips.iter().all(|(p, x)| *p < len && *x != 0))
                }
                Fault::Stall(d) => assert!(d <= plan.max_stall),
                _ => {}
            }
            let g = plan.gap(&mut rng);
            assert!(g >= Duration::from_millis(50) && g <= Duration::from_millis(150));
        }
        assert_eq!(seen.len(), FaultKind::ALL.len(), "every kind is chosen");
    }
}
