//! Has the target (or the path to it) lost records it acknowledged, and what does it take to
//! bring it level again? Decided at each WELCOME from seqs alone, so it is tested here without
//! a session.
//!
//! Two kinds of loss look alike at the WELCOME (a durable seq below the last ACK):
//! - a relay that acknowledged batches and died (or was left) before forwarding them: the master
//!   target never had them. The agent knew what the target held (CONTROL target-durable, see
//!   [`crate::stream::queue`]'s `relayed`), cleared its dirty-region map only up to there, and
//!   the new path's durable seq is at or above it: every write the target lacks is in a region
//!   still dirty, and resending those regions is enough ([`Repair::Resend`]);
//! - the target itself lost records it held (restored from an older copy, its journal cut):
//!   below what the agent knew to be target-durable, the dirty map no longer says which regions
//!   differ, and every region is compared with the target's hashes ([`Repair::Compare`]).

use std::fmt;

use rewind_formats::Seq;

/// How the agent brings the target level after a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Resend the regions the dirty-region map holds, whole, without asking the target.
    Resend,
    /// Pin every region and compare each with the target's hashes (HASHES).
    Compare,
}

impl Repair {
    /// The name in the status file and the log.
    pub fn name(self) -> &'static str {
        match self {
            Repair::Resend => "resend",
            Repair::Compare => "compare",
        }
    }
}

/// A loss found at a WELCOME: the repair and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub repair: Repair,
    pub why: String,
}

/// What the agent knew when a WELCOME came, in wire seqs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Known {
    /// The WELCOME says the target needs a resync: an adopted group, a relay whose target lost
    /// what the relay had forwarded, or (most often) only that the HELLO's last acknowledged
    /// seq is above the durable seq, which the seqs below tell better.
    pub resync_needed: bool,
    /// In this run (the base is set): the last seq the previous peer acknowledged, and what
    /// the master target held for sure (the same seq when the peer was the target itself).
    pub this_run: Option<(Seq, Seq)>,
    /// The first WELCOME of a run: the target-durable seq the last run wrote down.
    pub acked_before: Option<Seq>,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.repair.name(), self.why)
    }
}

/// The loss a WELCOME with durable seq `durable` shows, if any.
pub fn judge(durable: Seq, k: Known) -> Option<Loss> {
    let compare = |why: String| {
        Some(Loss {
            repair: Repair::Compare,
            why,
        })
    };
    let flagged = || compare("the target says it needs a resync".into());
    if let Some((acked, target)) = k.this_run {
        if durable >= acked {
            return if k.resync_needed { flagged() } else { None };
        }
        // (Below the last ACK, a "resync needed" says no more than that: the target answers
        // so to any HELLO whose last acknowledged seq it does not hold.)
        if durable >= target {
            return Some(Loss {
                repair: Repair::Resend,
                why: format!(
                    "durable seq {durable} is below the {acked} the last peer acknowledged, but \
                     not below the {target} the master target held: only what a relay cached \
                     is missing, and its regions are still dirty"
                ),
            });
        }
        return compare(format!(
            "durable seq {durable} is below the {target} the master target held: the target \
             lost data the dirty-region map no longer tracks"
        ));
    }
    if k.resync_needed {
        return flagged();
    }
    match k.acked_before {
        Some(a) if durable > Seq(0) && durable < a => compare(format!(
            "durable seq {durable} is below the {a} the target held at the last run"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(acked: u64, target: u64) -> Known {
        Known {
            this_run: Some((Seq(acked), Seq(target))),
            ..Known::default()
        }
    }

    fn repair(durable: u64, k: Known) -> Option<Repair> {
        judge(Seq(durable), k).map(|l| l.repair)
    }

    #[test]
    fn at_or_above_the_last_ack_nothing_is_lost() {
        assert_eq!(repair(100, run(100, 100)), None);
        assert_eq!(repair(120, run(100, 80)), None);
    }

    #[test]
    fn a_relays_unforwarded_stretch_is_resent_from_the_dirty_regions() {
        // Relay A acknowledged up to 100, the target held 80: the next relay says 80 or more.
        assert_eq!(repair(80, run(100, 80)), Some(Repair::Resend));
        assert_eq!(repair(95, run(100, 80)), Some(Repair::Resend));
        let why = judge(Seq(80), run(100, 80)).unwrap().why;
        assert!(why.contains("80") && why.contains("100"), "{why}");
    }

    #[test]
    fn below_what_the_target_held_every_region_is_compared() {
        // The target went back further than the relay's cache: data it held is gone.
        assert_eq!(repair(79, run(100, 80)), Some(Repair::Compare));
        // Straight to the target (its ACKs are target-durable): any step back is its loss.
        assert_eq!(repair(99, run(100, 100)), Some(Repair::Compare));
    }

    #[test]
    fn a_resync_needed_at_or_above_the_last_ack_or_at_first_contact_is_a_compare() {
        let k = Known {
            resync_needed: true,
            ..run(100, 80)
        };
        assert_eq!(repair(100, k), Some(Repair::Compare));
        let first = Known {
            resync_needed: true,
            ..Known::default()
        };
        assert_eq!(repair(0, first), Some(Repair::Compare), "an adopted group");
    }

    #[test]
    fn a_resync_needed_below_the_last_ack_is_judged_by_the_seqs() {
        // The target (or relay) answers so to any HELLO acknowledged past its durable seq.
        let k = Known {
            resync_needed: true,
            ..run(100, 80)
        };
        assert_eq!(repair(90, k), Some(Repair::Resend));
        assert_eq!(repair(70, k), Some(Repair::Compare));
    }

    #[test]
    fn the_first_welcome_is_judged_against_the_last_runs_seq() {
        let k = |a| Known {
            acked_before: a,
            ..Known::default()
        };
        assert_eq!(repair(49, k(Some(Seq(50)))), Some(Repair::Compare));
        assert_eq!(repair(50, k(Some(Seq(50)))), None);
        // An empty target is an initial sync, not a loss.
        assert_eq!(repair(0, k(Some(Seq(50)))), None);
        assert_eq!(repair(10, k(None)), None);
    }
}
