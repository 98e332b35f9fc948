//! Per disk: bytes captured, sent, acknowledged, the backlog, what is out of sync, and the
//! sync pass's progress and ETA.

use std::sync::atomic::Ordering;
use std::time::Instant;

use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

use super::Sources;
use crate::stream::queue::DiskTally;
use crate::sync::dirty::REGION;

/// Reads one counter of a disk's tally.
type Tally = fn(&DiskTally) -> u64;

/// Writes the disks' families.
pub fn encode(src: &Sources, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let group = src.settings.group.as_str();
    let names: Vec<&str> = src.settings.disks.iter().map(|d| d.name.as_str()).collect();
    let tallies = src.queue.tallies();
    let tally = |i: usize| tallies.get(i).copied().unwrap_or_default();
    let pinned = src.dirty.pinned_per_disk();
    let sync = src.sync.get();
    let labels = |i: usize| [("group", group), ("disk", names[i])];
    let counters: [(&str, &str, Tally); 3] = [
        (
            "rewind_captured_bytes",
            "Bytes the workload wrote to the disk (dropped in bitmap mode or not).",
            |t| t.captured,
        ),
        (
            "rewind_sent_bytes",
            "Bytes of the disk's records handed to the sender, before compression (sent again \
             after a reconnect).",
            |t| t.sent,
        ),
        (
            "rewind_acked_bytes",
            "Bytes of the disk's records the target acknowledged as durable.",
            |t| t.acked,
        ),
    ];
    for (name, help, get) in counters {
        let mut f = Family::counter(enc, name, help)?;
        for i in 0..names.len() {
            f.counter_at(&labels(i), get(&tally(i)))?;
        }
    }
    let mut f = Family::gauge(
        enc,
        "rewind_backlog_bytes",
        "Bytes of the disk's records in the stream, not yet acknowledged.",
    )?;
    for i in 0..names.len() {
        let t = tally(i);
        f.gauge_at(&labels(i), t.queued.saturating_sub(t.acked))?;
    }
    let mut f = Family::gauge(
        enc,
        "rewind_out_of_sync_bytes",
        "Bytes of the disk's regions waiting for a sync compare (pinned regions times the \
         region size): what the target may lack outside the stream.",
    )?;
    for i in 0..names.len() {
        let n = pinned.get(i).copied().unwrap_or(0);
        f.gauge_at(&labels(i), n.saturating_mul(REGION))?;
    }
    // The pass's rate over all disks, for each disk's ETA.
    let (done_all, elapsed) = (
        src.progress
            .iter()
            .map(|p| p.done_bytes.load(Ordering::Relaxed))
            .sum::<u64>(),
        sync.started
            .map(|s| sync.ended.unwrap_or_else(Instant::now).duration_since(s))
            .unwrap_or_default()
            .as_secs_f64(),
    );
    let rate = (elapsed >= 0.1 && done_all > 0).then(|| done_all as f64 / elapsed);
    let mut ratio = Family::gauge(
        enc,
        "rewind_sync_progress_ratio",
        "How far the current (or last) sync pass is over the disk, 0 to 1.",
    )?;
    let mut etas = Vec::new();
    for (i, p) in src.progress.iter().enumerate().take(names.len()) {
        let done = p.done_bytes.load(Ordering::Relaxed);
        let total = p.total_bytes.load(Ordering::Relaxed);
        let r = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).min(1.0)
        };
        ratio.gauge_at(&labels(i), r)?;
        let left = total.saturating_sub(done);
        etas.push(match rate {
            _ if left == 0 => Some(0.0),
            Some(rate) => Some(left as f64 / rate),
            None => None,
        });
    }
    let mut f = Family::gauge(
        enc,
        "rewind_sync_eta_seconds",
        "Estimated seconds until the sync pass is done with the disk, at the pass's rate so \
         far; absent before a rate is known.",
    )?;
    for (i, eta) in etas.into_iter().enumerate() {
        if let Some(eta) = eta {
            f.gauge_at(&labels(i), eta)?;
        }
    }
    Ok(())
}
