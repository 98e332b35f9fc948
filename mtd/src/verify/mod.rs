//! Online verify (`rewind verify G`, `POST /v1/groups/G/verify`): compares the source's disks
//! with the replica while the workload keeps writing, as a job.
//!
//! The target asks the group's agent (CONTROL verify request carrying the job id); the agent
//! compares region by region with the target's HASHES, only where no write it captured could
//! be missing from the target's answer, and retries the others at later seqs (why that gives no
//! false alarm: `rewind_agent::sync::verify`). Its reports come back as CONTROL verify reports
//! (`registry`); each differing range raises a `verify.mismatch` event, the end a
//! `verify.finished` event and the metrics of `crate::metrics::verify`.
//!
//! A block the target cannot read (an IO error in a segment or the base) is answered with a
//! hash no block has (see `crate::server::session`), so it is reported as differing, not as a
//! failed verify. Reads of journal segments do not check the records' crc (views read data in
//! place), so silent corruption of a sealed segment is found only by a compare like this one.

pub mod last;
pub(crate) mod registry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rewind_formats::message::ControlOp;
use rewind_formats::verify::VerifyRequest as WireRequest;

use crate::api::jobs::{JobInfo, JobResult};
use crate::api::verify::{VerifyDiff, VerifyRequest, VerifyResult};
use crate::jobs::{Busy, Job, Jobs};
use crate::refused::Refused;
use crate::server::registry as sessions;
use crate::store::points::PointSpec;
use crate::store::Store;

/// How long regions the workload keeps writing are retried when the request does not say.
pub const DEFAULT_DEADLINE_SECS: u64 = 600;
/// The longest deadline a request may give (a day).
pub const MAX_DEADLINE_SECS: u64 = 24 * 3600;
/// How long the job waits past the deadline for the agent's last report (a repair's resync
/// included) before it gives up.
const GRACE: Duration = Duration::from_secs(900);

/// Why a verify did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Starts a verify of `group` as a job.
pub fn start(
    store: &Arc<Store>,
    jobs: &Arc<Jobs>,
    group: &str,
    req: VerifyRequest,
) -> Result<JobInfo, StartError> {
    let deadline = req.deadline_secs.unwrap_or(DEFAULT_DEADLINE_SECS);
    if deadline == 0 || deadline > MAX_DEADLINE_SECS {
        return Err(Refused::Invalid(format!(
            "deadline_secs {deadline}: give 1 to {MAX_DEADLINE_SECS} seconds"
        ))
        .into());
    }
    let g = store
        .group(group)
        .map_err(|e| Refused::NotFound(e.to_string()))?;
    let point_seq = match &req.point {
        None => None,
        Some(p) => {
            let spec = PointSpec::parse(p).map_err(|e| Refused::Invalid(e.to_string()))?;
            let seq = g
                .resolve(&spec)
                .map_err(|e| Refused::Conflict(format!("group {group}: {e}")))?;
            Some(seq.0)
        }
    };
    if !sessions::connected(&g) {
        return Err(Refused::Conflict(format!(
            "no agent is connected for group {group}: verify compares with the source's disks \
             through it"
        ))
        .into());
    }
    let store = store.clone();
    let name = group.to_string();
    let repair = req.repair;
    Ok(jobs.spawn("verify", group, move |job| {
        run(&store, &name, job, point_seq, deadline, repair)
    })?)
}

/// The job: asks the agent, follows its reports, publishes what they found.
fn run(
    store: &Store,
    group: &str,
    job: &Job,
    point_seq: Option<u64>,
    deadline_secs: u64,
    repair: bool,
) -> anyhow::Result<JobResult> {
    let g = store.group(group)?;
    let id = job.info().id;
    let waiting = registry::wait_for(group, id);
    let link = sessions::link(&g).with_context(|| format!("no agent is connected for {group}"))?;
    let wire = WireRequest {
        job: id,
        point: point_seq,
        deadline_secs,
        repair,
    };
    sessions::send_control(&g, ControlOp::VerifyRequest, &wire.to_arg())
        .map_err(anyhow::Error::msg)?;
    job.progress(0.0, "asked the agent to compare its disks with the replica");
    let give_up = Instant::now() + Duration::from_secs(deadline_secs) + GRACE;
    let mut result = VerifyResult {
        point_seq,
        ..VerifyResult::default()
    };
    loop {
        let r = match waiting.rx.recv_timeout(Duration::from_secs(1)) {
            Ok(r) => r,
            Err(_) => {
                if let Some(end) = link.ended.borrow().as_ref() {
                    bail!(
                        "the agent's session ended during the verify ({}): run it again",
                        end.message
                    );
                }
                if Instant::now() >= give_up {
                    bail!("the agent sent no verify report to the end in time");
                }
                continue;
            }
        };
        if let Some(e) = r.error {
            bail!("the agent could not verify: {e}");
        }
        for range in &r.ranges {
            let disk = g.disk(range.disk as usize).0;
            tracing::warn!(group, job = id, %disk, offset = range.offset, len = range.len,
                seq = range.seq, "verify: the replica differs from the source");
            store.events.emit(
                "verify.mismatch",
                Some(group),
                serde_json::json!({
                    "job": id, "disk": disk, "offset": range.offset, "len": range.len,
                    "seq": range.seq, "time_ms": range.time_ms,
                }),
            );
            result.mismatched_bytes += range.len;
            result.ranges.push(VerifyDiff {
                disk,
                offset: range.offset,
                len: range.len,
                seq: range.seq,
                time_ms: range.time_ms,
            });
        }
        result.total_bytes = r.total_bytes;
        result.compared_bytes = r.compared_bytes;
        if r.done {
            result.not_compared_bytes = r.not_compared_bytes;
            result.repaired = r.repaired;
            result.recompared_bytes = r.recompared_bytes;
            break;
        }
        let pct = if r.total_bytes == 0 {
            0.0
        } else {
            r.compared_bytes as f64 * 100.0 / r.total_bytes as f64
        };
        job.progress(
            pct.min(99.0),
            format!(
                "compared {} of {} bytes, {} differing ranges",
                r.compared_bytes,
                r.total_bytes,
                result.ranges.len()
            ),
        );
    }
    last::record(
        group,
        last::LastVerify {
            job: id,
            ended_ms: rewind_linux::clock::now_ms(),
            compared_bytes: result.compared_bytes,
            mismatched_bytes: result.mismatched_bytes,
            ranges: result.ranges.len(),
            repaired: result.repaired,
        },
    );
    store.events.emit(
        "verify.finished",
        Some(group),
        serde_json::json!({
            "job": id, "mismatched_bytes": result.mismatched_bytes,
            "ranges": result.ranges.len(), "compared_bytes": result.compared_bytes,
            "not_compared_bytes": result.not_compared_bytes, "repaired": result.repaired,
            "recompared_bytes": result.recompared_bytes,
        }),
    );
    Ok(JobResult {
        verify: Some(result),
        ..JobResult::of(group)
    })
}
