//! The agent's report to its target (CONTROL op `report`, see `formats/src/agent_report.rs`):
//! the same view of the group as the metrics (state, RPO, spool, sync), for a site that never
//! talks to agents. Built by the status writer, sent by the sender: one every
//! [`REPORT_INTERVAL`], and at once when the mode changes. Only the newest report waits to be
//! sent (a link that is down does not pile them up).

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rewind_formats::agent_report::{AgentMode, AgentReport};

use super::group::view;
use super::Sources;
use crate::now_ms;

/// How often an unchanged report is sent again (the site's view of a group is this old at most,
/// plus its poll interval).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The group's report as of now.
pub fn report(src: &Sources) -> AgentReport {
    let (v, q) = view(src, &src.connected);
    let mode = match v.state {
        "bitmap" => AgentMode::Bitmap,
        "initial_sync" => AgentMode::InitialSync,
        "resync" => AgentMode::Resync,
        // Bitmap mode wins over every other state but fenced and drain; under those the agent
        // still owes what the reasons say.
        _ if v.reasons.contains(&"bitmap_mode") => AgentMode::Bitmap,
        _ if v.reasons.contains(&"initial_sync") => AgentMode::InitialSync,
        _ if v.reasons.contains(&"resync") => AgentMode::Resync,
        _ => AgentMode::Streaming,
    };
    let sync = src.sync.get();
    let syncing = !matches!(mode, AgentMode::Streaming);
    let (done, total) = src.progress.iter().fold((0u64, 0u64), |(d, t), p| {
        (
            d + p.done_bytes.load(Ordering::Relaxed),
            t + p.total_bytes.load(Ordering::Relaxed),
        )
    });
    let percent = if total == 0 {
        100.0
    } else {
        (done as f64 * 100.0 / total as f64).min(100.0)
    };
    let dirty = src.dirty.stats();
    let (captured, sent) = src
        .queue
        .tallies()
        .iter()
        .fold((0u64, 0u64), |(c, s), t| (c + t.captured, s + t.sent));
    AgentReport {
        mode,
        sync: Some(sync.state),
        sync_percent: syncing.then_some((percent * 10.0).round() / 10.0),
        sync_remaining_bytes: syncing.then_some(total.saturating_sub(done)),
        rpo_seconds: v.rpo,
        backlog_bytes: q.queued_bytes,
        spooled_bytes: q.spooled_bytes,
        spool_capacity_bytes: q.spool_capacity,
        dirty_regions: dirty.dirty,
        captured_bytes: captured,
        sent_bytes: sent,
        wire_bytes: super::wire::totals().1,
        at_ms: now_ms(),
    }
}

/// The newest report not yet sent, and when the last one was offered.
#[derive(Debug, Default)]
pub struct ReportSlot(Mutex<SlotState>);

#[derive(Debug, Default)]
struct SlotState {
    pending: Option<AgentReport>,
    last_mode: Option<AgentMode>,
    last_at: Option<Instant>,
}

impl ReportSlot {
    /// Keeps `r` to send when the mode changed or [`REPORT_INTERVAL`] passed since the last one
    /// kept; returns whether it was kept.
    pub fn offer(&self, r: AgentReport) -> bool {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let due = st.last_at.is_none_or(|t| t.elapsed() >= REPORT_INTERVAL);
        if !due && st.last_mode == Some(r.mode) {
            return false;
        }
        st.last_mode = Some(r.mode);
        st.last_at = Some(Instant::now());
        st.pending = Some(r);
        true
    }

    /// The report to send now, if any (the sender's side).
    pub fn take(&self) -> Option<AgentReport> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .take()
    }

    /// A new session starts: send the next report at once, whatever changed.
    pub fn session_started(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).last_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(mode: AgentMode) -> AgentReport {
        AgentReport {
            mode,
            ..AgentReport::default()
        }
    }

    #[test]
    fn keeps_one_per_interval_and_every_change_of_mode() {
        let slot = ReportSlot::default();
        assert!(slot.offer(r(AgentMode::Streaming)));
        assert!(!slot.offer(r(AgentMode::Streaming)), "same mode, too soon");
        assert!(
            slot.offer(r(AgentMode::Bitmap)),
            "a change of mode goes at once"
        );
        // Only the newest waits.
        assert_eq!(slot.take().map(|r| r.mode), Some(AgentMode::Bitmap));
        assert_eq!(slot.take(), None);
        slot.session_started();
        assert!(
            slot.offer(r(AgentMode::Bitmap)),
            "a new session gets one at once"
        );
    }
}
