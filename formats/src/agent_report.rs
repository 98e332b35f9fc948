//! The agent's report to its target (CONTROL op `report`, agent -> target, frame version 2 on):
//! what only the agent knows and a site needs to raise alerts: whether it is in bitmap mode,
//! how a sync stands, its spool, and its RPO measured where the writes happen. JSON in the
//! CONTROL's `arg`; the agent sends one every few seconds and on every change of mode, the target
//! keeps the last one per group (`GET /v1/groups`, the metrics, an `agent.mode` event).
//!
//! The target reads it leniently (unknown fields ignored, every field defaulted) so that agents
//! of a later build can add fields; the numbers are checked by [`AgentReport::check`] before the
//! target keeps them.

use serde::{Deserialize, Serialize};

use crate::agent_status::SyncState;

/// The largest RPO a report may carry: a hundred years, in seconds.
pub const MAX_RPO_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

/// What an agent reports of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentReport {
    /// `streaming`, `bitmap`, `initial-sync`, `resync` (see [`AgentMode`]).
    pub mode: AgentMode,
    /// The sync's state, as the status file says it.
    pub sync: Option<SyncState>,
    /// How far the running sync is, over all disks (0..=100); None when none runs.
    pub sync_percent: Option<f64>,
    /// Bytes the sync still has to send (None when none runs).
    pub sync_remaining_bytes: Option<u64>,
    /// Seconds since the oldest write the target has not acknowledged was made (0 when caught
    /// up): the group's RPO at the source.
    pub rpo_seconds: f64,
    /// Bytes waiting to be sent or acknowledged, in memory and spool.
    pub backlog_bytes: u64,
    pub spooled_bytes: u64,
    pub spool_capacity_bytes: u64,
    /// Regions written while in bitmap mode, to resync once the target has caught up.
    pub dirty_regions: u64,
    /// Bytes the workload wrote to the group's disks since the agent started (its churn,
    /// captured whether or not in bitmap mode). A counter: it starts again from 0 when the
    /// agent restarts, and whoever takes differences treats a drop as a restart.
    pub captured_bytes: u64,
    /// Bytes of records handed to the sender since the agent started, before compression
    /// (sent again after a reconnect, so it can exceed what was captured).
    pub sent_bytes: u64,
    /// Bytes of frames that went out on the link since the agent started (compressed
    /// batches and tags): what the WAN carried.
    pub wire_bytes: u64,
    /// When the agent made this report (ms since 1970, its clock).
    pub at_ms: u64,
}

/// The agent's replication mode for a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentMode {
    /// Every write is captured and sent in order.
    #[default]
    Streaming,
    /// Memory and spool were full: writes are only tracked as dirty regions (resynced later).
    Bitmap,
    /// The first full copy of the disks is running.
    InitialSync,
    /// A resync (after a crash, bitmap mode or a loss at the target) is running.
    Resync,
}

impl AgentMode {
    /// The name as JSON, metrics labels and events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Streaming => "streaming",
            AgentMode::Bitmap => "bitmap",
            AgentMode::InitialSync => "initial-sync",
            AgentMode::Resync => "resync",
        }
    }

    /// Every mode, for metrics that show one series per state.
    pub const ALL: [AgentMode; 4] = [
        AgentMode::Streaming,
        AgentMode::Bitmap,
        AgentMode::InitialSync,
        AgentMode::Resync,
    ];
}

impl AgentReport {
    /// Parses a report as it arrives in a CONTROL `arg`, and checks its numbers.
    pub fn parse(arg: &str) -> Result<AgentReport, String> {
        let r: AgentReport = serde_json::from_str(arg).map_err(|e| format!("agent report: {e}"))?;
        r.check()?;
        Ok(r)
    }

    /// The numbers are what they can be: a percentage in 0..=100 and a finite RPO that is not
    /// negative (a report that says otherwise is refused, not shown).
    pub fn check(&self) -> Result<(), String> {
        if let Some(p) = self.sync_percent {
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("agent report: sync_percent {p} is not in 0..=100"));
            }
        }
        // An RPO past a century is no measurement (the agent's clock or its arithmetic is wrong).
        if !self.rpo_seconds.is_finite() || !(0.0..=MAX_RPO_SECONDS).contains(&self.rpo_seconds) {
            return Err(format!(
                "agent report: rpo_seconds {} is not a duration",
                self.rpo_seconds
            ));
        }
        Ok(())
    }

    /// The JSON the agent sends.
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_leniently() {
        let r = AgentReport {
            mode: AgentMode::Bitmap,
            sync: Some(SyncState::Bitmap),
            sync_percent: Some(12.5),
            sync_remaining_bytes: Some(4096),
            rpo_seconds: 3.25,
            backlog_bytes: 1 << 20,
            spooled_bytes: 10,
            spool_capacity_bytes: 100,
            dirty_regions: 7,
            captured_bytes: 1 << 30,
            sent_bytes: 1 << 29,
            wire_bytes: 1 << 27,
            at_ms: 1_764_115_200_000,
        };
        assert_eq!(AgentReport::parse(&r.to_arg()), Ok(r));
        // A later agent's extra field is ignored; a missing one defaults.
        let r = AgentReport::parse(r#"{"mode":"resync","new_field":1}"#).unwrap();
        assert_eq!(r.mode, AgentMode::Resync);
        assert_eq!(r.rpo_seconds, 0.0);
    }

    #[test]
    fn floats_round_trip_exactly() {
        // Found by the fuzzer: without serde_json's float_roundtrip, a long mantissa parsed
        // one ULP away from what the report printed back.
        let r = AgentReport::parse(r#"{"rpo_seconds":311111111.11111111111111111111}"#).unwrap();
        assert_eq!(AgentReport::parse(&r.to_arg()), Ok(r));
    }

    #[test]
    fn impossible_numbers_are_refused() {
        for bad in [
            r#"{"sync_percent":101}"#,
            r#"{"rpo_seconds":-1}"#,
            r#"{"rpo_seconds":1e38}"#,
            r#"{"sync_percent":-0.5}"#,
            r#"{"mode":"sideways"}"#,
            "not json",
        ] {
            assert!(AgentReport::parse(bad).is_err(), "{bad}");
        }
    }
}
