//! Recovery points: parsing point specs and resolving them to a seq.
//!
//! Every seq is a crash-consistent point. Tags name some of them. Wall-clock time is resolved to a
//! seq once, through a small table of (last seq of a chunk, source timestamp), and everything else
//! works by seq.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rewind_formats::message::{TagInfo, TagKind};
use rewind_formats::Seq;

use super::StoreError;

/// How a user names a point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointSpec {
    Latest,
    Seq(Seq),
    Tag(String),
    LatestAppConsistent,
    /// Unix milliseconds, from an RFC 3339 time or a relative one (`-15m`) resolved at parse time.
    Time(u64),
}

impl PointSpec {
    /// Parse `latest`, `seq:N`, `tag:NAME`, `latest-app-consistent`, an RFC 3339 time, or `-15m`.
    pub fn parse(s: &str) -> Result<PointSpec, StoreError> {
        Self::parse_at(s, SystemTime::now())
    }

    /// As `parse`, with "now" given (relative times are relative to it).
    pub(crate) fn parse_at(s: &str, now: SystemTime) -> Result<PointSpec, StoreError> {
        let bad = |why: String| StoreError::BadPoint {
            spec: s.to_string(),
            why,
        };
        let s_trim = s.trim();
        if s_trim == "latest" {
            return Ok(PointSpec::Latest);
        }
        if s_trim == "latest-app-consistent" {
            return Ok(PointSpec::LatestAppConsistent);
        }
        if let Some(n) = s_trim.strip_prefix("seq:") {
            return n
                .parse()
                .map(|n| PointSpec::Seq(Seq(n)))
                .map_err(|e| bad(format!("{e}")));
        }
        if let Some(name) = s_trim.strip_prefix("tag:") {
            if name.is_empty() {
                return Err(bad("empty tag name".into()));
            }
            return Ok(PointSpec::Tag(name.to_string()));
        }
        if let Some(rel) = s_trim.strip_prefix('-') {
            let d = humantime::parse_duration(rel).map_err(|e| bad(format!("{e}")))?;
            let t = now
                .checked_sub(d)
                .ok_or_else(|| bad("before the epoch".into()))?;
            return Ok(PointSpec::Time(rewind_linux::clock::unix_ms(t)));
        }
        match humantime::parse_rfc3339_weak(s_trim) {
            Ok(t) => Ok(PointSpec::Time(rewind_linux::clock::unix_ms(t))),
            Err(_) => Err(bad(
                "expected latest, latest-app-consistent, seq:N, tag:NAME, an RFC 3339 time \
                 (2026-11-26T10:00:00Z) or a relative time (-15m)"
                    .into(),
            )),
        }
    }
}

impl fmt::Display for PointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointSpec::Latest => write!(f, "latest"),
            PointSpec::LatestAppConsistent => write!(f, "latest-app-consistent"),
            PointSpec::Seq(s) => write!(f, "seq:{}", s.0),
            PointSpec::Tag(n) => write!(f, "tag:{n}"),
            PointSpec::Time(ms) => write!(f, "{}", format_ms(*ms)),
        }
    }
}

/// Whether a long-term point may answer a spec the journal could not: one older than the window,
/// or a tag or time the journal no longer holds. (Not a seq past the newest: that is no point.)
pub(crate) fn long_term_may_answer(e: &StoreError, spec: &PointSpec) -> bool {
    match e {
        StoreError::PointTooOld { .. } => true,
        StoreError::PointNotFound { .. } => {
            matches!(spec, PointSpec::Tag(_) | PointSpec::Time(_))
        }
        _ => false,
    }
}

pub(crate) fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The points a group holds: a time table and its tags, both in seq order.
#[derive(Default, Debug, Clone)]
pub(crate) struct Points {
    /// (last seq of a chunk, source timestamp in unix ms), seq ascending.
    times: Vec<(Seq, u64)>,
    tags: Vec<TagInfo>,
}

impl Points {
    pub(crate) fn record_time(&mut self, last_seq: Seq, timestamp_ms: u64) {
        self.times.push((last_seq, timestamp_ms));
    }

    /// Add a tag (in seq order). The same tag may be found twice at start-up, in the manifest's
    /// horizon tags and in a segment a crash kept from being deleted: it is kept once.
    pub(crate) fn add_tag(&mut self, tag: TagInfo) {
        if !self
            .tags
            .iter()
            .rev()
            .take_while(|t| t.seq >= tag.seq)
            .any(|t| *t == tag)
        {
            self.tags.push(tag);
        }
    }

    pub(crate) fn tags(&self) -> &[TagInfo] {
        &self.tags
    }

    /// Oldest and newest (seq, time) entries still held.
    pub(crate) fn time_range(&self) -> Option<((Seq, u64), (Seq, u64))> {
        Some((*self.times.first()?, *self.times.last()?))
    }

    /// The source time of `seq`: that of the chunk holding it (the first entry at or after it), or
    /// the newest time held when `seq` is past the table. None when no time is held.
    pub(crate) fn time_of(&self, seq: Seq) -> Option<u64> {
        let i = self.times.partition_point(|(s, _)| *s < seq);
        self.times.get(i).or(self.times.last()).map(|(_, t)| *t)
    }

    /// Drop what the base image now holds: times before `horizon` and tags older than it, except
    /// the start of a resync still open at the horizon (the points after it stay unrecoverable).
    pub(crate) fn prune_before(&mut self, horizon: Seq) {
        self.times.retain(|(s, _)| *s >= horizon);
        let keep = self.open_sync_begins(horizon);
        self.tags.retain(|t| t.seq >= horizon || keep.contains(t));
    }

    /// Forget every point after `end` (failover commit discards that history).
    pub(crate) fn truncate_after(&mut self, end: Seq) {
        self.times.retain(|(s, _)| *s <= end);
        self.tags.retain(|t| t.seq <= end);
    }

    /// Sync-begin tags before `at` whose resync had not ended by then.
    fn open_sync_begins(&self, at: Seq) -> Vec<TagInfo> {
        self.not_recoverable()
            .into_iter()
            .filter(|w| w.begin.seq < at && w.end.is_none_or(|e| e > at))
            .map(|w| w.begin)
            .collect()
    }

    /// The tags a merge to `horizon` must keep in the manifest: those at the horizon itself, and
    /// the start of a resync still open there.
    pub(crate) fn kept_at_horizon(&self, horizon: Seq) -> Vec<TagInfo> {
        let mut kept = self.open_sync_begins(horizon);
        kept.extend(self.tags.iter().filter(|t| t.seq == horizon).cloned());
        kept
    }

    /// The seq ranges that are not recoverable: from each resync's first record up to (not
    /// including) the last record of the next resync to finish, where the disk is a mix of old and
    /// new blocks. An open resync runs to the newest seq.
    pub(crate) fn not_recoverable(&self) -> Vec<Unrecoverable> {
        let mut out: Vec<Unrecoverable> = Vec::new();
        for t in &self.tags {
            match t.kind {
                TagKind::SyncBegin => out.push(Unrecoverable {
                    begin: t.clone(),
                    end: None,
                }),
                // A finished sync leaves the whole disk consistent: it closes every resync still
                // open (one that an agent crash cut short is superseded by the one that ran to
                // the end).
                TagKind::SyncEnd => {
                    for w in out.iter_mut().filter(|w| w.end.is_none()) {
                        w.end = Some(t.seq);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The seq a spec names, given the newest durable seq and the retention horizon.
    pub(crate) fn resolve(
        &self,
        spec: &PointSpec,
        durable: Seq,
        horizon: Seq,
    ) -> Result<Seq, StoreError> {
        let seq = match spec {
            PointSpec::Latest => durable,
            PointSpec::Seq(s) => {
                if *s > durable {
                    return Err(StoreError::PointNotFound {
                        spec: spec.to_string(),
                        why: format!("the newest durable seq is {}", durable.0),
                    });
                }
                *s
            }
            PointSpec::Tag(name) => self
                .tags
                .iter()
                .rev()
                .find(|t| &t.name == name)
                .map(|t| t.seq)
                .ok_or_else(|| StoreError::PointNotFound {
                    spec: spec.to_string(),
                    why: "no tag of that name in the retention window".into(),
                })?,
            PointSpec::LatestAppConsistent => self
                .tags
                .iter()
                .rev()
                .find(|t| t.kind == TagKind::AppConsistent)
                .map(|t| t.seq)
                .ok_or_else(|| StoreError::PointNotFound {
                    spec: spec.to_string(),
                    why: "no app-consistent tag in the retention window".into(),
                })?,
            PointSpec::Time(ms) => {
                let i = self.times.partition_point(|(_, t)| *t <= *ms);
                if i == 0 {
                    let oldest = self.times.first().map(|(s, t)| (s.0, format_ms(*t)));
                    return Err(match oldest {
                        Some((s, t)) => StoreError::PointTooOld {
                            spec: spec.to_string(),
                            horizon: horizon.0,
                            detail: format!("the oldest retained point is seq:{s} at {t}"),
                        },
                        None => StoreError::PointNotFound {
                            spec: spec.to_string(),
                            why: "the group holds no timed points".into(),
                        },
                    });
                }
                self.times[i - 1].0
            }
        };
        if seq < horizon {
            return Err(StoreError::PointTooOld {
                spec: spec.to_string(),
                horizon: horizon.0,
                detail: format!("seq {} was merged into the base image", seq.0),
            });
        }
        if let Some(w) = self
            .not_recoverable()
            .into_iter()
            .find(|w| w.begin.seq <= seq && w.end.is_none_or(|e| seq < e))
        {
            return Err(StoreError::NotRecoverable {
                spec: spec.to_string(),
                why: match w.end {
                    Some(e) => format!(
                        "seq {} falls inside the {} from seq {} to {}; pick a point before seq {} or from seq {} on",
                        seq.0, w.begin.name, w.begin.seq.0, e.0, w.begin.seq.0, e.0
                    ),
                    None => format!(
                        "seq {} falls inside the {} that began at seq {} and has not finished; pick a point before seq {} or wait for it to finish",
                        seq.0, w.begin.name, w.begin.seq.0, w.begin.seq.0
                    ),
                },
            });
        }
        Ok(seq)
    }
}

/// A range of seqs during a resync: `[begin.seq, end)`, open-ended while the resync runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unrecoverable {
    pub(crate) begin: TagInfo,
    pub(crate) end: Option<Seq>,
}

impl Points {
    /// Whether every point from here on is recoverable (no resync is running).
    pub(crate) fn consistent(&self) -> bool {
        self.not_recoverable().iter().all(|w| w.end.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            PointSpec::parse_at("latest", now).unwrap(),
            PointSpec::Latest
        );
        assert_eq!(
            PointSpec::parse_at("seq:42", now).unwrap(),
            PointSpec::Seq(Seq(42))
        );
        assert_eq!(
            PointSpec::parse_at("tag:v1", now).unwrap(),
            PointSpec::Tag("v1".into())
        );
        assert_eq!(
            PointSpec::parse_at("latest-app-consistent", now).unwrap(),
            PointSpec::LatestAppConsistent
        );
        assert_eq!(
            PointSpec::parse_at("-15m", now).unwrap(),
            PointSpec::Time(10_000_000 - 900_000)
        );
        assert_eq!(
            PointSpec::parse_at("1970-01-01T00:00:10Z", now).unwrap(),
            PointSpec::Time(10_000)
        );
        assert!(PointSpec::parse_at("yesterday", now).is_err());
        assert!(PointSpec::parse_at("seq:x", now).is_err());
    }

    #[test]
    fn long_term_answers_old_points_tags_and_times_but_not_future_seqs() {
        let too_old = StoreError::PointTooOld {
            spec: "seq:1".into(),
            horizon: 5,
            detail: String::new(),
        };
        let not_found = StoreError::PointNotFound {
            spec: "x".into(),
            why: String::new(),
        };
        assert!(long_term_may_answer(&too_old, &PointSpec::Seq(Seq(1))));
        assert!(long_term_may_answer(
            &not_found,
            &PointSpec::Tag("t".into())
        ));
        assert!(long_term_may_answer(&not_found, &PointSpec::Time(5)));
        assert!(!long_term_may_answer(&not_found, &PointSpec::Seq(Seq(99))));
        assert!(!long_term_may_answer(
            &StoreError::UnknownGroup("g".into()),
            &PointSpec::Time(5)
        ));
    }

    #[test]
    fn resolves_and_refuses_too_old() {
        let mut p = Points::default();
        p.record_time(Seq(10), 1000);
        p.record_time(Seq(20), 2000);
        p.add_tag(TagInfo {
            seq: Seq(15),
            kind: TagKind::AppConsistent,
            timestamp_ms: 1500,
            name: "a".into(),
        });
        p.add_tag(TagInfo {
            seq: Seq(18),
            kind: TagKind::User,
            timestamp_ms: 1800,
            name: "b".into(),
        });
        let d = Seq(20);
        assert_eq!(p.resolve(&PointSpec::Latest, d, Seq(0)).unwrap(), Seq(20));
        assert_eq!(
            p.resolve(&PointSpec::Time(1999), d, Seq(0)).unwrap(),
            Seq(10)
        );
        assert_eq!(
            p.resolve(&PointSpec::Time(5000), d, Seq(0)).unwrap(),
            Seq(20)
        );
        assert_eq!(
            p.resolve(&PointSpec::LatestAppConsistent, d, Seq(0))
                .unwrap(),
            Seq(15)
        );
        assert_eq!(
            p.resolve(&PointSpec::Tag("b".into()), d, Seq(0)).unwrap(),
            Seq(18)
        );
        assert!(matches!(
            p.resolve(&PointSpec::Time(10), d, Seq(0)),
            Err(StoreError::PointTooOld { .. })
        ));
        assert!(matches!(
            p.resolve(&PointSpec::Seq(Seq(5)), d, Seq(10)),
            Err(StoreError::PointTooOld { .. })
        ));
        assert!(matches!(
            p.resolve(&PointSpec::Seq(Seq(21)), d, Seq(0)),
            Err(StoreError::PointNotFound { .. })
        ));
    }
}
