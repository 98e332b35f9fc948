//! `rewind_verify_last_timestamp_seconds{group}` and `rewind_verify_mismatched_bytes{group}`:
//! when each group's last online verify ended and how many bytes of its replica it found to
//! differ from the source and left unrepaired (0: none), so that an alert can say "a verify
//! found differences" or "no verify for a week". Read from `crate::verify::last`, which keeps
//! them across restarts.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

/// The collector.
#[derive(Debug)]
pub struct VerifyMetrics;

impl Collector for VerifyMetrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = crate::verify::last::all();
        let mut f = Family::gauge(
            &mut enc,
            "rewind_verify_last_timestamp_seconds",
            "When the group's last online verify ended (unix seconds).",
        )?;
        for (g, l) in &all {
            f.gauge_at(&[("group", g.as_str())], super::seconds(l.ended_ms))?;
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_verify_mismatched_bytes",
            "Bytes where the group's last online verify found the replica differs from the \
             source and did not repair them.",
        )?;
        for (g, l) in &all {
            let unrepaired = if l.differs() { l.mismatched_bytes } else { 0 };
            f.gauge_at(&[("group", g.as_str())], unrepaired)?;
        }
        Ok(())
    }
}
