//! Running out of space or descriptors: which IO errors pause the store instead of failing it,
//! and the loop that waits them out.
//!
//! ENOSPC, EDQUOT, EMFILE and ENFILE say that a resource outside the store ran out, not that the
//! store's data is bad: the same step succeeds once an operator (or the merger) frees space or
//! descriptors. So every write-side step of the store retries them, with a bounded backoff, and
//! reports the pause in [`Health`] with what it was doing and on what; nothing is acknowledged
//! meanwhile because the writer publishes a seq only after the step that makes it durable.
//! Every other error (EIO above all, and any fsync failure that is not one of these) keeps its
//! old meaning: the store fails for good.
//!
//! A step retried here must be safe to run again from its start: each caller says why its step
//! is (the journal rewrites the same bytes at the same offsets before the fdatasync that vouches
//! for them, a segment is rebuilt under its temporary name, a footer is written again whole).

use std::io;
use std::time::Duration;

use super::health::{Component, Health};
use super::StoreError;

/// What ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Shortage {
    /// ENOSPC or EDQUOT: the file system (or the quota) is full.
    Space,
    /// EMFILE or ENFILE: the process's or the system's open-file limit.
    Descriptors,
}

impl Shortage {
    pub(crate) fn of_io(e: &io::Error) -> Option<Shortage> {
        match e.raw_os_error()? {
            libc::ENOSPC | libc::EDQUOT => Some(Shortage::Space),
            libc::EMFILE | libc::ENFILE => Some(Shortage::Descriptors),
            _ => None,
        }
    }

    /// The shortage behind a store error, if it is one (only IO errors are).
    pub(crate) fn of(e: &StoreError) -> Option<Shortage> {
        match e {
            StoreError::Io { source, .. } => Shortage::of_io(source),
            _ => None,
        }
    }

    /// As monitoring names it (`rewind_store_health{state=...}`).
    pub(crate) fn state_name(self) -> &'static str {
        match self {
            Shortage::Space => "no_space",
            Shortage::Descriptors => "no_descriptors",
        }
    }

    /// As the `resource` label names it.
    pub(crate) fn resource(self) -> &'static str {
        match self {
            Shortage::Space => "space",
            Shortage::Descriptors => "descriptors",
        }
    }
}

/// Waits between tries: short at first (a descriptor freed a moment later should not cost a
/// second of replication), doubling up to a cap (a full disk waits for an operator, and polling
/// it faster only burns CPU).
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(10);
    pub(crate) const CAP: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Backoff {
        Backoff {
            next: Self::FIRST,
            cap: Self::CAP,
        }
    }

    /// The wait before the next try.
    pub(crate) fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }
}

/// Run `step` until it succeeds or fails with something other than a shortage. While it fails
/// with a shortage, `component`'s pause is reported (what: `what`, where: the error's path) and
/// the step retried after a backoff; `may_try` is asked before every try and, while it says no
/// (the merger is spending the space reserve, see `reserve.rs`), the try waits. A success clears
/// the component's pause.
pub(crate) fn retry_while_short<T>(
    health: &Health,
    component: Component,
    may_try: &dyn Fn() -> bool,
    mut step: impl FnMut() -> super::Result<T>,
) -> super::Result<T> {
    let mut backoff = Backoff::new();
    loop {
        while !may_try() {
            std::thread::sleep(Backoff::FIRST * 5);
        }
        match step() {
            Ok(v) => {
                health.recovered(component);
                return Ok(v);
            }
            Err(e) => match Shortage::of(&e) {
                Some(s) => {
                    health.pause(component, s, &e);
                    std::thread::sleep(backoff.step());
                }
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::path::PathBuf;

    fn io_err(errno: i32) -> StoreError {
        StoreError::Io {
            op: "create segment",
            path: PathBuf::from("/data/groups/g/journal/seg-00000002.rwj.tmp"),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn classifies_what_pauses() {
        assert_eq!(Shortage::of(&io_err(libc::ENOSPC)), Some(Shortage::Space));
        assert_eq!(Shortage::of(&io_err(libc::EDQUOT)), Some(Shortage::Space));
        assert_eq!(
            Shortage::of(&io_err(libc::EMFILE)),
            Some(Shortage::Descriptors)
        );
        assert_eq!(
            Shortage::of(&io_err(libc::ENFILE)),
            Some(Shortage::Descriptors)
        );
        assert_eq!(Shortage::of(&io_err(libc::EIO)), None);
        assert_eq!(Shortage::of(&StoreError::Failed("x".into())), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new();
        let waits: Vec<_> = (0..10).map(|_| b.step()).collect();
        assert_eq!(waits[0], Backoff::FIRST);
        assert_eq!(waits[1], Backoff::FIRST * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), Backoff::CAP);
    }

    /// Shortages pause and are retried (health says what and where meanwhile); the step's
    /// value comes back once it succeeds and health is ok again.
    #[test]
    fn retries_shortages_and_reports_them() {
        let health = Health::default();
        let tries = Cell::new(0);
        let v = retry_while_short(&health, Component::Writer, &|| true, || {
            tries.set(tries.get() + 1);
            match tries.get() {
                1 => Err(io_err(libc::EMFILE)),
                2 => {
                    assert_eq!(health.state_name(), "no_descriptors");
                    Err(io_err(libc::ENOSPC))
                }
                3 => {
                    assert_eq!(health.state_name(), "no_space");
                    let p = health.pauses();
                    assert_eq!(p.len(), 1);
                    assert_eq!(p[0].what, "create segment");
                    assert!(p[0].path.ends_with("seg-00000002.rwj.tmp"), "{p:?}");
                    Ok(7)
                }
                _ => unreachable!("no more tries after a success"),
            }
        })
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(health.state_name(), "ok");
        assert!(health.pauses().is_empty());
    }

    /// Anything else is returned at once, never retried.
    #[test]
    fn other_errors_are_not_retried() {
        let health = Health::default();
        let tries = Cell::new(0);
        let r: super::super::Result<()> =
            retry_while_short(&health, Component::Writer, &|| true, || {
                tries.set(tries.get() + 1);
                Err(io_err(libc::EIO))
            });
        assert!(r.is_err());
        assert_eq!(tries.get(), 1);
    }
}
