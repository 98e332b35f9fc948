//! The group as its source sees it: RPO, state, why it is not in sync, spool, bitmap mode, link.
//!
//! RPO here is the age of the oldest write the target does not hold yet (0 when caught up):
//! the older of (a) the oldest record not yet acknowledged, and (b) the moment the agent began
//! to owe the target writes it could not stream in order (bitmap mode, a resync after a
//! restart, the initial sync), until the sync pass that settles them is done. Only the agent
//! can know (a); see `docs/METRICS.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

use super::Sources;
use crate::drain::DrainState;
use crate::state::status::SyncState;

/// `rewind_state{state}` values, most telling first.
pub const STATES: [&str; 8] = [
    "replicating",
    "initial_sync",
    "resync",
    "bitmap",
    "disconnected",
    "draining",
    "drained",
    "fenced",
];
/// `rewind_sync_reason{reason}` values the agent can tell.
pub const REASONS: [&str; 7] = [
    "initial_sync",
    "resync",
    "bitmap_mode",
    "link_down",
    "link_congested",
    "draining",
    "fenced",
];

/// Since when the agent owes the target writes outside the ordered stream (see the module doc).
#[derive(Debug)]
pub struct Owed(Mutex<Option<Instant>>);

impl Owed {
    /// At start: regions left pinned by the last run are owed since (at least) now.
    pub fn at_start(pinned: bool) -> Owed {
        Owed(Mutex::new(pinned.then(Instant::now)))
    }

    /// Updates and returns the start of what is owed: kept while anything is, dropped once
    /// nothing is.
    fn update(&self, owing: bool, overflow_since: Option<Instant>) -> Option<Instant> {
        let mut since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *since = match (owing, *since) {
            (false, _) => None,
            (true, Some(s)) => Some(overflow_since.map_or(s, |o| o.min(s))),
            (true, None) => Some(overflow_since.unwrap_or_else(Instant::now)),
        };
        *since
    }
}

/// One scrape's view of the group.
pub(super) struct View {
    pub(super) state: &'static str,
    pub(super) reasons: Vec<&'static str>,
    pub(super) rpo: f64,
}

pub(super) fn view(
    src: &Sources,
    connected: &AtomicBool,
) -> (View, crate::stream::queue::QueueStats) {
    let q = src.queue.stats();
    let sync = src.sync.get();
    let pinned = src.dirty.pinned_count() > 0;
    let connected = connected.load(Ordering::Relaxed);
    let fenced = src.gate.fenced().is_some();
    let drain = src.drain.state();
    let syncing = matches!(
        sync.state,
        SyncState::Running | SyncState::Acking | SyncState::Bitmap | SyncState::Failed
    );
    let owing = q.overflow || pinned || syncing;
    let since = src.owed.update(owing, q.overflow_since);
    let now = Instant::now();
    let age = |t: Option<Instant>| t.map_or(0.0, |t| now.duration_since(t).as_secs_f64());
    // Through a relay, a record the relay acknowledged is still at risk until the master target
    // holds it: the RPO is measured to the target.
    let rpo = age(q.oldest_unacked)
        .max(age(q.oldest_not_at_target))
        .max(age(since));
    let initial = sync.kind == Some("initial-sync") && (syncing || pinned);
    let resync = !initial && (syncing || pinned);
    let state = if fenced {
        "fenced"
    } else if matches!(drain, DrainState::Drained { .. }) {
        "drained"
    } else if matches!(drain, DrainState::Draining { .. }) {
        "draining"
    } else if q.overflow {
        "bitmap"
    } else if !connected {
        "disconnected"
    } else if initial {
        "initial_sync"
    } else if resync {
        "resync"
    } else {
        "replicating"
    };
    let mut reasons = Vec::new();
    for (on, r) in [
        (initial, "initial_sync"),
        (resync, "resync"),
        (q.overflow, "bitmap_mode"),
        (!connected && !fenced, "link_down"),
        (q.spooled_bytes > 0, "link_congested"),
        (matches!(drain, DrainState::Draining { .. }), "draining"),
        (fenced, "fenced"),
    ] {
        if on {
            reasons.push(r);
        }
    }
    (
        View {
            state,
            reasons,
            rpo,
        },
        q,
    )
}

/// Writes the group's families.
pub fn encode(
    src: &Sources,
    connected: &Arc<AtomicBool>,
    enc: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let group = src.settings.group.as_str();
    let g = [("group", group)];
    let (v, q) = view(src, connected);
    Family::gauge(
        enc,
        "rewind_rpo_seconds",
        "Age of the oldest write the target does not hold yet; 0 when caught up.",
    )?
    .gauge_at(&g, v.rpo)?;
    if let Some(t) = src.settings.rpo_target_secs {
        Family::gauge(
            enc,
            "rewind_rpo_target_seconds",
            "The RPO the group should meet (the agent's rpo_target setting).",
        )?
        .gauge_at(&g, t)?;
    }
    Family::gauge(
        enc,
        "rewind_state",
        "1 for the group's state at its source.",
    )?
    .one_hot(&g, "state", &STATES, |s| s == v.state)?;
    Family::gauge(
        enc,
        "rewind_sync_reason",
        "1 for each reason the source sees for the group not being in sync.",
    )?
    .one_hot(&g, "reason", &REASONS, |r| v.reasons.contains(&r))?;
    Family::gauge(
        enc,
        "rewind_bitmap_mode",
        "1 while memory and spool are full and writes are tracked as dirty regions only.",
    )?
    .gauge_at(&g, u32::from(q.overflow))?;
    Family::gauge(
        enc,
        "rewind_link_up",
        "1 while the agent has a session with its target.",
    )?
    .gauge_at(&g, u32::from(connected.load(Ordering::Relaxed)))?;
    if let Some(t) = q.target_durable {
        Family::gauge(
            enc,
            "rewind_target_durable_seq",
            "Through a relay: the last seq durable at the master target (the relay's ACKs say what its cache holds).",
        )?
        .gauge_at(&g, t.0)?;
        Family::gauge(
            enc,
            "rewind_relay_durable_seq",
            "Through a relay: the last seq durable in the relay's cache.",
        )?
        .gauge_at(&g, q.base.map_or(0, |b| b.wire(q.acked_seq).0))?;
    }
    Family::gauge(
        enc,
        "rewind_queue_bytes",
        "Bytes the memory queue holds (records not yet acknowledged).",
    )?
    .gauge_at(&g, q.queued_bytes)?;
    Family::gauge(
        enc,
        "rewind_spool_used_bytes",
        "Bytes of the disk spool in use.",
    )?
    .gauge_at(&g, q.spooled_bytes)?;
    Family::gauge(
        enc,
        "rewind_spool_capacity_bytes",
        "Size of the disk spool (0: no spool).",
    )?
    .gauge_at(&g, q.spool_capacity)?;
    Family::counter(
        enc,
        "rewind_dropped_writes",
        "Writes dropped from the stream in bitmap mode (their regions are resynced).",
    )?
    .counter_at(&g, q.dropped)?;
    let (raw, wire) = super::wire::totals();
    let mut f = Family::counter(
        enc,
        "rewind_link_bytes",
        "Bytes sent to the target, by encoding: zstd (the frames on the wire) and none \
         (the same batches before compression).",
    )?;
    f.counter_at(&[("group", group), ("encoding", "zstd")], wire)?;
    f.counter_at(&[("group", group), ("encoding", "none")], raw)?;
    Family::histogram(
        enc,
        "rewind_capture_seconds",
        "Time from a workload write reaching the agent to its reply (on disk and recorded).",
    )?
    .histogram_at(&g, &super::capture::LATENCY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn owed_keeps_the_oldest_start_until_nothing_is_owed() {
        let o = Owed::at_start(false);
        assert!(o.update(false, None).is_none());
        let first = o.update(true, None).expect("owing");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(o.update(true, None), Some(first), "kept while owing");
        let older = first - Duration::from_secs(5);
        assert_eq!(
            o.update(true, Some(older)),
            Some(older),
            "bitmap start is older"
        );
        assert!(o.update(false, None).is_none(), "settled");
        assert!(Owed::at_start(true).update(true, None).is_some());
    }
}
