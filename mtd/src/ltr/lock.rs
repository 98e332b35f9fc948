//! S3 Object Lock (`rewind-mtd serve --ltr-object-lock MODE`, docs/LTR.md "Object Lock"): every
//! object an archive writes is locked at least until its point's `keep_until_ms`, so that
//! neither a mistake nor stolen credentials can delete a kept point before its time.
//!
//! - A manifest is locked until its point's `keep_until_ms`.
//! - A chunk is locked until the archiving point's `keep_until_ms` plus [`slack_ms`]; a chunk a
//!   later point reuses is extended (PutObjectRetention) when its lock ends before that point's
//!   `keep_until_ms`. The slack makes that rare: a chunk in steady use is extended about once a
//!   quarter of its retention rather than at every archive.
//! - How long a chunk is locked is not stored: it is at least the latest `keep_until_ms` of the
//!   manifests that name it (the catalog reads them all at start), and the archiver keeps the
//!   exact figure for the chunks it writes or extends ([`LockEnds`]).

use std::collections::HashMap;

use super::chunk::Hash;

/// The retention mode: under governance a user with `s3:BypassGovernanceRetention` can still
/// delete or shorten; under compliance nobody can, root included, until the date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// How an object is locked: its mode, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retain {
    pub mode: LockMode,
    pub until_ms: u64,
}

impl Retain {
    /// The retain-until date S3 takes (ISO 8601, UTC), rounded up to the second: never
    /// earlier than `until_ms`.
    pub fn date(&self) -> String {
        let secs = self.until_ms.div_ceil(1000);
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        )
        .to_string()
    }
}

/// How far past `keep_until_ms` a chunk written or extended at `now_ms` is locked: a quarter
/// of the retention still ahead (at least a second). A chunk stays locked at most that long
/// after the last point that needs it expires; in exchange a chunk every point reuses is
/// extended about four times per retention period, not at every archive.
pub fn slack_ms(keep_until_ms: u64, now_ms: u64) -> u64 {
    (keep_until_ms.saturating_sub(now_ms) / 4).max(1000)
}

/// Until when each chunk is known to be locked (a lower bound: see the module comment).
#[derive(Debug, Default)]
pub struct LockEnds(HashMap<Hash, u64>);

impl LockEnds {
    /// Known locked until at least `until_ms`.
    pub fn raise(&mut self, h: Hash, until_ms: u64) {
        let e = self.0.entry(h).or_insert(0);
        *e = (*e).max(until_ms);
    }

    /// The chunks of `names` whose known lock ends before `keep_until_ms` (each once).
    pub fn short_of(&self, names: impl IntoIterator<Item = Hash>, keep_until_ms: u64) -> Vec<Hash> {
        let mut out: Vec<Hash> = names
            .into_iter()
            .filter(|h| self.0.get(h).copied().unwrap_or(0) < keep_until_ms)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn forget(&mut self, h: &Hash) {
        self.0.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_up_and_slack_is_a_quarter_of_what_is_ahead() {
        let r = Retain {
            mode: LockMode::Compliance,
            until_ms: 1_764_892_800_001,
        };
        assert_eq!(r.date(), "2025-12-05T00:00:01Z");
        assert_eq!(slack_ms(400_000_000, 0), 100_000_000);
        assert_eq!(slack_ms(1000, 0), 1000);
        assert_eq!(slack_ms(0, 5000), 1000);
    }

    #[test]
    fn only_chunks_locked_too_briefly_are_extended() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut ends = LockEnds::default();
        ends.raise(a, 100);
        ends.raise(a, 50);
        ends.raise(b, 300);
        assert_eq!(ends.short_of([a, b, c, a], 200), vec![a, c]);
        ends.forget(&b);
        assert_eq!(ends.short_of([b], 200), vec![b]);
    }
}
