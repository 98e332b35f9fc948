//! The store as a whole: the file system under the data dir (capacity and free space, which
//! every group's journal shares), the store's health, and the writer's latencies.

use std::sync::LazyLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::{Family, LatencyHistogram};

use super::Parts;
use crate::store::shortage::Shortage;

/// One writer commit: placing a group commit's chunks, writing them, fdatasync, publishing.
pub(crate) static APPLY: LazyLock<LatencyHistogram> = LazyLock::new(LatencyHistogram::default);
/// The fdatasync of a group commit's segments alone.
pub(crate) static FSYNC: LazyLock<LatencyHistogram> = LazyLock::new(LatencyHistogram::default);

/// The collector.
#[derive(Debug)]
pub struct StoreMetrics(pub Parts);

impl Collector for StoreMetrics {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let store = &self.0 .0.exports.store;
        // statvfs of the data dir: what the journals and base images may still grow into.
        if let Ok(vfs) = nix::sys::statvfs::statvfs(&store.dir) {
            let frag = vfs.fragment_size();
            Family::gauge(
                &mut enc,
                "rewind_store_capacity_bytes",
                "Size of the file system holding the data dir (every group's journal and base).",
            )?
            .gauge_at(&[], vfs.blocks().saturating_mul(frag))?;
            Family::gauge(
                &mut enc,
                "rewind_store_free_bytes",
                "Bytes of that file system the daemon may still use (f_bavail).",
            )?
            .gauge_at(&[], vfs.blocks_available().saturating_mul(frag))?;
        }
        let health = store.health.state_name();
        Family::gauge(
            &mut enc,
            "rewind_store_health",
            "1 for the store's health: ok, no_space or no_descriptors (acknowledgements paused), or failed.",
        )?
        .one_hot(
            &[],
            "state",
            &["ok", "no_space", "no_descriptors", "failed"],
            |s| s == health,
        )?;
        // What is paused, on what step and file: the answer to "why are acknowledgements held".
        let mut f = Family::gauge(
            &mut enc,
            "rewind_store_paused",
            "1 for each part of the store (writer, merger) paused by a shortage, with the step and the file it was on.",
        )?;
        for p in store.health.pauses() {
            f.gauge_at(
                &[
                    ("component", p.component.name()),
                    ("resource", p.shortage.resource()),
                    ("step", &p.what),
                    ("path", &p.path),
                ],
                1u32,
            )?;
        }
        let mut f = Family::counter(
            &mut enc,
            "rewind_store_pauses",
            "Pauses for lack of space or file descriptors since the daemon started.",
        )?;
        for s in [Shortage::Space, Shortage::Descriptors] {
            f.counter_at(&[("resource", s.resource())], store.health.pauses_total(s))?;
        }
        Family::gauge(
            &mut enc,
            "rewind_store_space_reserve_bytes",
            "Bytes the space reserve holds for the merger on a full disk (0 while a merge spends it).",
        )?
        .gauge_at(&[], store.reserve.held_bytes())?;
        Family::histogram(
            &mut enc,
            "rewind_apply_seconds",
            "Time of one journal group commit: write, fdatasync and publish of its chunks.",
        )?
        .histogram_at(&[], &APPLY)?;
        Family::histogram(
            &mut enc,
            "rewind_fsync_seconds",
            "Time of the fdatasync of one group commit's journal segments.",
        )?
        .histogram_at(&[], &FSYNC)
    }
}
