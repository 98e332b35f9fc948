//! What long-term retention (`crate::ltr`) asks of a group: the point a retention period keeps,
//! and which ranges changed between two points while their records are still in the journal.

use rewind_formats::message::TagKind;
use rewind_formats::Seq;

use super::group::Group;
use super::points::PointSpec;

/// The point a period keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodPoint {
    pub seq: Seq,
    pub time_ms: u64,
    pub app_consistent: bool,
    /// Names of the tags at `seq`.
    pub tags: Vec<String>,
}

impl Group {
    /// The point kept for the period `[start_ms, end_ms)`: the newest app-consistent point in
    /// it if there is one (the point an application can restart from cleanly), else the newest
    /// point before its end (the state the disk was in when the period closed). None when that
    /// point has already left the journal or is not recoverable (inside a resync).
    pub(crate) fn period_point(&self, start_ms: u64, end_ms: u64) -> Option<PeriodPoint> {
        let st = self.state.read().expect("group lock");
        let (durable, horizon) = (st.durable, st.horizon());
        let app = st
            .points
            .tags()
            .iter()
            .rev()
            .find(|t| {
                t.kind == TagKind::AppConsistent && (start_ms..end_ms).contains(&t.timestamp_ms)
            })
            .map(|t| t.seq);
        let seq = match app {
            Some(s) => st
                .points
                .resolve(&PointSpec::Seq(s), durable, horizon)
                .ok()?,
            None => st
                .points
                .resolve(&PointSpec::Time(end_ms.checked_sub(1)?), durable, horizon)
                .ok()?,
        };
        let at: Vec<_> = st.points.tags().iter().filter(|t| t.seq == seq).collect();
        Some(PeriodPoint {
            seq,
            time_ms: st.points.time_of(seq).unwrap_or(end_ms),
            app_consistent: at.iter().any(|t| t.kind == TagKind::AppConsistent),
            tags: at.iter().map(|t| t.name.clone()).collect(),
        })
    }

    /// The ranges of disk `ix` written by records with seq in `(after, upto]`, if the journal
    /// still holds all of them (the horizon is at or before `after`); None otherwise.
    pub(crate) fn written_between(
        &self,
        ix: usize,
        after: Seq,
        upto: Seq,
    ) -> Option<Vec<(u64, u64)>> {
        let st = self.state.read().expect("group lock");
        if st.horizon() > after {
            return None;
        }
        Some(st.indexes.get(ix)?.written_in(after, upto))
    }
}
