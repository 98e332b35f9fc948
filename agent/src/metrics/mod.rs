//! The agent's Prometheus metrics (`rewind-agent run --metrics-listen ADDR`, `GET /metrics`).
//! Every metric is listed with its meaning in `docs/METRICS.md`.
//!
//! One collector reads, at scrape time, what the agent's parts already keep: the queue's stats
//! and per-disk tallies, the dirty-region map, the sync's progress, the drain and the write
//! gate. The hot paths add only atomics: the capture latency ([`capture`]) and the bytes on
//! the link ([`wire`]).

pub mod capture;
pub mod disks;
pub mod group;
pub mod http;
pub mod report;
pub mod wire;

#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use rewind_linux::metrics::BuildInfo;

use crate::config::Settings;
use crate::drain::{DrainCtl, WriteGate};
use crate::stream::queue::Queue;
use crate::sync::dirty::DirtyMap;
use crate::sync::progress::{SyncProgress, SyncStatus};

/// What the agent's collector reads.
pub struct Sources {
    pub settings: Arc<Settings>,
    pub queue: Arc<Queue>,
    pub dirty: Arc<DirtyMap>,
    pub progress: Arc<[SyncProgress]>,
    pub sync: Arc<SyncStatus>,
    pub drain: Arc<DrainCtl>,
    pub gate: Arc<WriteGate>,
    /// Whether the sender has a session (from the status writer's link view).
    pub connected: Arc<AtomicBool>,
    pub owed: group::Owed,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("group", &self.settings.group)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct AgentCollector(Arc<Sources>);

impl Collector for AgentCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        group::encode(&self.0, &self.0.connected, &mut enc)?;
        disks::encode(&self.0, &mut enc)
    }
}

/// The agent's registry.
pub fn registry(sources: Arc<Sources>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(BuildInfo {
        component: "agent",
        version: env!("CARGO_PKG_VERSION"),
    }));
    r.register_collector(Box::new(AgentCollector(sources)));
    r
}
