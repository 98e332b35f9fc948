//! The target's Prometheus metrics (`rewind-mtd serve --metrics-listen ADDR`, `GET /metrics`).
//! Every metric is listed with its meaning in `docs/METRICS.md`.
//!
//! Each file is one concept and one collector, computed at scrape time from where the facts
//! live: the store's groups ([`groups`]), the store's disk and writer ([`store`]), refused
//! frames ([`frames`]), NBD traffic ([`nbd`]), test failovers ([`drills`]), drills' verified
//! points ([`verified`]), recovery plans ([`plans`]) and online verifies ([`verify`]). What hot
//! paths count (frames, NBD requests, apply and fsync latency) sits in process-wide atomics
//! declared in those files, so that counting costs an atomic add and needs no handle threaded
//! through.

pub mod drills;
pub mod frames;
pub mod groups;
pub mod http;
pub mod nbd;
pub mod plans;
pub mod store;
pub mod verified;
pub mod verify;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rewind_linux::metrics::BuildInfo;

use crate::control::Control;

/// Every collector of the target, over the daemon's running parts.
pub fn registry(control: &Arc<Control>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(BuildInfo {
        component: "mtd",
        version: env!("CARGO_PKG_VERSION"),
    }));
    r.register_collector(Box::new(groups::Groups(Parts(control.clone()))));
    r.register_collector(Box::new(store::StoreMetrics(Parts(control.clone()))));
    r.register_collector(Box::new(frames::Frames));
    r.register_collector(Box::new(nbd::NbdMetrics));
    r.register_collector(Box::new(plans::Plans(Parts(control.clone()))));
    r.register_collector(Box::new(verified::Verified(Parts(control.clone()))));
    r.register_collector(Box::new(verify::VerifyMetrics));
    r
}

/// The daemon's parts as a collector holds them (`Collector` wants `Debug`).
#[derive(Clone)]
pub struct Parts(pub Arc<Control>);

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parts")
    }
}

/// Milliseconds since the epoch as Prometheus seconds.
pub(crate) fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
