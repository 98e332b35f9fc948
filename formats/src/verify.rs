//! Online verify (CONTROL ops `verify request`, target -> agent, and `verify report`, agent ->
//! target; frame version 2 on): the target asks the agent to compare its disks with the replica,
//! the agent runs a report-only compare with the target's HASHES and reports progress and the
//! ranges that differ. JSON in the CONTROL's `arg`, like [`crate::agent_report`].
//!
//! A report carries at most [`MAX_RANGES_PER_REPORT`] ranges so that it always fits the `arg`
//! text ([`crate::MAX_MESSAGE_LEN`]); the agent sends as many reports as it needs and the target
//! adds their ranges up.

use serde::{Deserialize, Serialize};

/// Most differing ranges one report carries (each is about 90 bytes of JSON: 30 fit the 4 KiB
/// `arg` with room for the counters).
pub const MAX_RANGES_PER_REPORT: usize = 30;

/// target -> agent: compare every region of the group's disks with the replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The target's job id: every report names it.
    pub job: u64,
    /// The wire seq of the point to compare at first (`--point`): regions written after it are
    /// compared at a later seq. None: the newest acknowledged seq.
    #[serde(default)]
    pub point: Option<u64>,
    /// How long the agent keeps retrying regions the workload keeps writing before it reports
    /// them as not compared.
    pub deadline_secs: u64,
    /// Resend what differs (a resync of the regions it is in, inside a resync window) and
    /// report once that is acknowledged.
    #[serde(default)]
    pub repair: bool,
}

/// One range that differs: `len` bytes of disk `disk` (its index in the group) from `offset`,
/// compared at wire seq `seq` at `time_ms` (the agent's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRange {
    pub disk: u16,
    pub offset: u64,
    pub len: u64,
    pub seq: u64,
    pub time_ms: u64,
}

/// agent -> target: how a verify stands. Ranges are new since the previous report of the job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyReport {
    pub job: u64,
    /// Bytes of every disk together.
    pub total_bytes: u64,
    /// Bytes compared so far.
    pub compared_bytes: u64,
    /// Differing ranges found since the last report.
    pub ranges: Vec<VerifyRange>,
    /// The last report of the job: every region compared, or the deadline passed.
    pub done: bool,
    /// Bytes the workload kept writing until the deadline: never compared (only in the last
    /// report).
    pub not_compared_bytes: u64,
    /// Bytes compared in a later round than the first, because the workload wrote them after
    /// the seq of the first (only in the last report).
    pub recompared_bytes: u64,
    /// The differing regions were resynced and the target acknowledged it (`repair`; only in
    /// the last report).
    pub repaired: bool,
    /// Why the verify stopped early (the agent could not run it): the job fails with it.
    pub error: Option<String>,
}

impl VerifyRequest {
    pub fn parse(arg: &str) -> Result<VerifyRequest, String> {
        serde_json::from_str(arg).map_err(|e| format!("verify request: {e}"))
    }

    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).expect("a request always serialises")
    }
}

impl VerifyReport {
    /// Parses a report as it arrives, and checks its numbers.
    pub fn parse(arg: &str) -> Result<VerifyReport, String> {
        let r: VerifyReport =
            serde_json::from_str(arg).map_err(|e| format!("verify report: {e}"))?;
        if r.compared_bytes > r.total_bytes {
            return Err(format!(
                "verify report: compared_bytes {} > total_bytes {}",
                r.compared_bytes, r.total_bytes
            ));
        }
        if r.ranges.len() > MAX_RANGES_PER_REPORT {
            return Err(format!(
                "verify report: {} ranges (at most {MAX_RANGES_PER_REPORT})",
                r.ranges.len()
            ));
        }
        if let Some(bad) = r
            .ranges
            .iter()
            .find(|g| g.len == 0 || g.offset.checked_add(g.len).is_none())
        {
            return Err(format!("verify report: impossible range {bad:?}"));
        }
        Ok(r)
    }

    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_report_fits_a_control_arg() {
        let big = VerifyRange {
            disk: u16::MAX,
            offset: u64::MAX / 2,
            len: u64::MAX / 2,
            seq: u64::MAX,
            time_ms: u64::MAX,
        };
        let r = VerifyReport {
            job: u64::MAX,
            total_bytes: u64::MAX,
            compared_bytes: u64::MAX,
            ranges: vec![big; MAX_RANGES_PER_REPORT],
            done: true,
            not_compared_bytes: u64::MAX,
            repaired: true,
            recompared_bytes: u64::MAX,
            error: None,
        };
        let arg = r.to_arg();
        assert!(arg.len() <= crate::MAX_MESSAGE_LEN, "{} bytes", arg.len());
        assert_eq!(VerifyReport::parse(&arg), Ok(r));
    }

    #[test]
    fn impossible_reports_are_refused() {
        for bad in [
            r#"{"total_bytes":1,"compared_bytes":2}"#,
            r#"{"ranges":[{"disk":0,"offset":0,"len":0,"seq":1,"time_ms":1}]}"#,
            r#""text""#,
        ] {
            assert!(VerifyReport::parse(bad).is_err(), "{bad}");
        }
        assert!(VerifyRequest::parse(r#"{"job":1,"deadline_secs":5,"x":1}"#).is_err());
        assert_eq!(
            VerifyRequest::parse(r#"{"job":1,"deadline_secs":5}"#)
                .unwrap()
                .point,
            None
        );
    }
}
