//! `GROUP.epoch`: the group's epoch and the target address of the session it was taken for.
//!
//! The agent moves between targets (relays, or the master target itself) when one fails. A
//! relay that acknowledged records and died may come back later with them in its cache, after
//! the agent sent that stretch again, renumbered, through another path. The epoch tells the
//! master target which path is current: it is bumped, durably, before the first HELLO to an
//! address other than the last session's, and the target refuses sessions of older epochs.
//!
//! The file holds one line, `EPOCH ADDRESS`. A missing file is epoch 0 with no address (the
//! first session bumps it to 1); a file that does not parse is an error (never a silent 0: an
//! epoch that goes back would be refused by the target, or worse, by nobody).

use std::path::PathBuf;

use super::{files, StateDir};
use crate::error::{Error, Result};

impl StateDir {
    fn epoch_file(&self) -> PathBuf {
        self.group_file("epoch")
    }

    /// The epoch kept and the address it was taken for (0 and none before the first session).
    pub fn read_epoch(&self) -> Result<(u64, Option<String>)> {
        let path = self.epoch_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, None)),
            Err(e) => return Err(Error::path("reading the epoch", &path)(e)),
        };
        let bad = |why: &str| Error::Config {
            what: "epoch file",
            why: format!("{}: {why} (want `EPOCH ADDRESS`)", path.display()),
        };
        let (n, addr) = text
            .trim_end_matches('\n')
            .split_once(' ')
            .ok_or_else(|| bad("no address"))?;
        let n = n.parse().map_err(|_| bad("the epoch is not a number"))?;
        if addr.is_empty() || addr.contains(char::is_whitespace) {
            return Err(bad("the address is empty or holds spaces"));
        }
        Ok((n, Some(addr.to_string())))
    }

    /// The epoch for a session with `addr`: the kept one if the last session used `addr`,
    /// otherwise one more, written durably before this returns (so before the HELLO).
    pub fn epoch_for(&self, addr: &str) -> Result<u64> {
        let (epoch, last) = self.read_epoch()?;
        if last.as_deref() == Some(addr) {
            return Ok(epoch);
        }
        let next = epoch + 1;
        files::replace(
            &self.epoch_file(),
            format!("{next} {addr}\n").as_bytes(),
            true,
        )?;
        tracing::info!(group = %self.group, epoch = next, target = addr, last = last.as_deref(),
            "a new target address: the group's epoch moves on");
        Ok(next)
    }

    /// A target or relay refused our epoch as older than `held`: this state directory went
    /// back (made anew, or restored), while the agent is still the group's source. The epoch
    /// moves past `held` for `addr`, durably, so that the next HELLO is the current path.
    /// Relays never do this: only the source may say which path is current.
    pub fn move_past_epoch(&self, addr: &str, held: u64) -> Result<u64> {
        let (epoch, _) = self.read_epoch()?;
        let next = epoch.max(held) + 1;
        files::replace(
            &self.epoch_file(),
            format!("{next} {addr}\n").as_bytes(),
            true,
        )?;
        tracing::warn!(group = %self.group, old_epoch = epoch, held, epoch = next, target = addr,
            "our epoch was older than the group's (this state directory went back): moving past it");
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_moves_on_only_when_the_address_changes_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path(), "g");
        assert_eq!(st.read_epoch().unwrap(), (0, None));
        assert_eq!(st.epoch_for("tcp:a:1").unwrap(), 1);
        assert_eq!(st.epoch_for("tcp:a:1").unwrap(), 1, "the same address");
        assert_eq!(st.epoch_for("tcp:b:1").unwrap(), 2);
        assert_eq!(st.epoch_for("tcp:a:1").unwrap(), 3, "back is a move too");
        // Another StateDir on the same directory (a restarted agent) reads what was written.
        let again = StateDir::new(dir.path(), "g");
        assert_eq!(again.read_epoch().unwrap(), (3, Some("tcp:a:1".into())));
        assert_eq!(again.epoch_for("tcp:a:1").unwrap(), 3);
        // Groups keep their own.
        assert_eq!(
            StateDir::new(dir.path(), "h").epoch_for("tcp:a:1").unwrap(),
            1
        );
    }

    #[test]
    fn a_refused_epoch_moves_past_the_one_held_for_the_same_address() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path(), "g");
        assert_eq!(st.epoch_for("tcp:a:1").unwrap(), 1);
        assert_eq!(st.move_past_epoch("tcp:a:1", 6).unwrap(), 7);
        assert_eq!(
            st.epoch_for("tcp:a:1").unwrap(),
            7,
            "kept for the same address"
        );
        // Never backwards, whatever a refusal says.
        assert_eq!(st.move_past_epoch("tcp:a:1", 2).unwrap(), 8);
    }

    #[test]
    fn a_damaged_epoch_file_is_an_error_not_epoch_0() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path(), "g");
        std::fs::write(dir.path().join("g.epoch"), "x tcp:a:1\n").unwrap();
        let e = st.epoch_for("tcp:a:1").unwrap_err().to_string();
        assert!(e.contains("g.epoch") && e.contains("not a number"), "{e}");
        std::fs::write(dir.path().join("g.epoch"), "7\n").unwrap();
        assert!(st.read_epoch().is_err());
    }
}
