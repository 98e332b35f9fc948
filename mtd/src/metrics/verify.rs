//! `rewind_verify_last_timestamp_seconds{group}` and `rewind_verify_mismatched_bytes{group}`:
//! when each group's last online verify ended and how many bytes of its replica differed from
//! the source (0: none), so that an alert can say "a verify found differences" or "no verify
//! for a week". Kept in memory: a restart forgets them until the next verify.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

/// One group's last verify.
#[derive(Clone, Copy, Debug)]
struct Last {
    timestamp_ms: u64,
    mismatched_bytes: u64,
}

fn last() -> MutexGuard<'static, BTreeMap<String, Last>> {
    static L: Mutex<BTreeMap<String, Last>> = Mutex::new(BTreeMap::new());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// Notes a verify of `group` that ended now having found `mismatched_bytes`.
pub(crate) fn record(group: &str, mismatched_bytes: u64) {
    last().insert(
        group.to_string(),
        Last {
            timestamp_ms: rewind_linux::clock::now_ms(),
            mismatched_bytes,
        },
    );
}

/// The collector.
#[derive(Debug)]
pub struct VerifyMetrics;

impl Collector for VerifyMetrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = last().clone();
        let mut f = Family::gauge(
            &mut enc,
            "rewind_verify_last_timestamp_seconds",
            "When the group's last online verify ended (unix seconds).",
        )?;
        for (g, l) in &all {
            f.gauge_at(&[("group", g.as_str())], super::seconds(l.timestamp_ms))?;
        }
        let mut f = Family::gauge(
            &mut enc,
            "rewind_verify_mismatched_bytes",
            "Bytes where the group's last online verify found the replica differs from the source.",
        )?;
        for (g, l) in &all {
            f.gauge_at(&[("group", g.as_str())], l.mismatched_bytes)?;
        }
        Ok(())
    }
}
