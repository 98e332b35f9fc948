//! Epochs: which path of a group's stream is the current one.
//!
//! An agent may reach the target through several relays, or directly, and moves between them
//! when one dies. Each move bumps the group's epoch (the agent keeps it; relays carry it in
//! their HELLO). A relay that dies holding acknowledged but unforwarded batches may come back
//! later with them: by then the agent has renumbered and resent that stretch through another
//! path, so the old batches must never be applied. The group keeps the highest epoch a session
//! has come with, durably in its manifest before the session is welcomed, and a session below
//! it is refused. Equal epochs are the same path reconnecting (as before epochs existed).

use super::group::Group;
use super::Result;

/// A session came with an older epoch than one the group has already seen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "group {group}: this session's epoch {epoch} is older than epoch {held}, which the target \
     has already seen: it comes through a relay or address the agent has since left, and what \
     it carries is stale (not applied)"
)]
pub(crate) struct StaleEpoch {
    pub(crate) group: String,
    /// The epoch the session came with.
    pub(crate) epoch: u64,
    /// The highest epoch the group has seen.
    pub(crate) held: u64,
}

/// What became of a session's epoch.
#[derive(Debug)]
pub(crate) enum EpochRefused {
    Stale(StaleEpoch),
    /// The manifest could not be written: nothing was admitted.
    Failed(super::StoreError),
}

impl Group {
    /// The highest epoch a session of the group has come with.
    pub(crate) fn epoch(&self) -> u64 {
        self.manifest().epoch
    }

    /// Admits a session's epoch: refused below the group's, recorded (durably, before this
    /// returns) above it. Returns whether the epoch moved up (a new path takes over).
    pub(crate) fn admit_epoch(&self, epoch: u64) -> std::result::Result<bool, EpochRefused> {
        let held = self.epoch();
        if epoch < held {
            return Err(self.stale(epoch, held));
        }
        if epoch == held {
            return Ok(false);
        }
        let mut stale = None;
        let r: Result<_> = self.update_manifest(|m| {
            // Two sessions may race here: the manifest's lock orders them; the lower one loses.
            if epoch < m.epoch {
                stale = Some(m.epoch);
            } else {
                m.epoch = epoch;
            }
        });
        r.map_err(EpochRefused::Failed)?;
        if let Some(held) = stale {
            return Err(self.stale(epoch, held));
        }
        tracing::info!(group = %self.name, old_epoch = held, epoch, "a session of a newer epoch takes over the group");
        Ok(true)
    }

    /// Whether a session admitted at `epoch` is still the current path (no newer epoch came).
    pub(crate) fn check_epoch(&self, epoch: u64) -> std::result::Result<(), StaleEpoch> {
        let held = self.epoch();
        if epoch < held {
            return Err(match self.stale(epoch, held) {
                EpochRefused::Stale(s) => s,
                EpochRefused::Failed(_) => unreachable!("stale() only makes Stale"),
            });
        }
        Ok(())
    }

    fn stale(&self, epoch: u64, held: u64) -> EpochRefused {
        EpochRefused::Stale(StaleEpoch {
            group: self.name.clone(),
            epoch,
            held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::group::test_group;
    use crate::store::manifest::Manifest;

    #[test]
    fn a_lower_epoch_is_refused_naming_both_and_a_higher_one_is_kept_durably() {
        let (dir, g) = test_group();
        assert_eq!(g.epoch(), 0);
        assert!(!g.admit_epoch(0).unwrap(), "the same epoch changes nothing");
        assert!(g.admit_epoch(3).unwrap(), "a newer epoch takes over");
        assert_eq!(g.epoch(), 3);
        // Durable: the manifest on disk says so before the session goes on.
        assert_eq!(Manifest::load(&dir.path().join("g")).unwrap().epoch, 3);
        let Err(EpochRefused::Stale(s)) = g.admit_epoch(2) else {
            panic!("epoch 2 after 3 is stale")
        };
        assert_eq!((s.epoch, s.held), (2, 3));
        let m = s.to_string();
        assert!(
            m.contains("group g") && m.contains("epoch 2") && m.contains("epoch 3"),
            "{m}"
        );
        assert!(
            !m.contains("fenced"),
            "agents stop for good at that word: {m}"
        );
        assert_eq!(rewind_formats::stale_epoch_held(&m), Some(3), "{m}");
        assert_eq!(g.epoch(), 3, "a refused epoch changes nothing");
        assert!(!g.admit_epoch(3).unwrap(), "the current path may reconnect");
        assert!(g.check_epoch(3).is_ok());
        assert!(g.check_epoch(1).is_err());
    }

    #[test]
    fn the_epoch_survives_a_reload_of_the_group() {
        let (dir, g) = test_group();
        assert!(g.admit_epoch(7).unwrap());
        drop(g);
        let g = Group::load(
            dir.path().join("g"),
            crate::store::segment_file::LoadMode::Repair,
        )
        .unwrap();
        assert_eq!(g.epoch(), 7);
        assert!(matches!(g.admit_epoch(6), Err(EpochRefused::Stale(_))));
    }
}
