//! Drills (`crate::drill`): each group's last verified point and the result of its last drill,
//! from `DATA_DIR/drills/GROUP/{last,verified}.json` (so a restart keeps them). The test failover
//! metrics (`rewind_last_test_failover_*`, [`super::drills`]) keep their meaning: a drill that
//! boots a VM counts there too, as the test failover it is.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

use super::{seconds, Parts};

const RESULTS: [&str; 2] = ["passed", "failed"];

/// The collector.
#[derive(Debug)]
pub struct Verified(pub Parts);

impl Collector for Verified {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = self.0 .0.drills.evidence.all();
        let mut f = Family::gauge(
            &mut enc,
            "rewind_last_verified_point_timestamp_seconds",
            "Source time of the group's last point a drill proved recoverable.",
        )?;
        for (g, d) in &all {
            if let Some(ms) = d.verified.as_ref().and_then(|v| v.point_time_ms) {
                f.gauge_at(&[("group", g)], seconds(ms))?;
            }
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_last_verified_point_seq",
            "Seq of the group's last point a drill proved recoverable.",
        )?;
        for (g, d) in &all {
            if let Some(v) = &d.verified {
                f.gauge_at(&[("group", g)], v.seq)?;
            }
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_last_drill_success_timestamp_seconds",
            "When the group's last passing drill ended.",
        )?;
        for (g, d) in &all {
            if let Some(v) = &d.verified {
                f.gauge_at(&[("group", g)], seconds(v.verified_ms))?;
            }
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_drill_last_timestamp_seconds",
            "When the group's last drill ended, passed or failed.",
        )?;
        for (g, d) in &all {
            if let Some(r) = &d.last {
                f.gauge_at(&[("group", g)], seconds(r.ended_ms))?;
            }
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_drill_last_result",
            "1 for the result of the group's last drill: passed or failed.",
        )?;
        for (g, d) in &all {
            if let Some(r) = &d.last {
                let res = if r.ok { "passed" } else { "failed" };
                f.one_hot(&[("group", g)], "result", &RESULTS, |c| c == res)?;
            }
        }
        Ok(())
    }
}
