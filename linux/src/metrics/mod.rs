//! Prometheus plumbing shared by the daemons (`prometheus-client` underneath).
//!
//! Every Rewind metric is computed at scrape time by a
//! [`Collector`](prometheus_client::collector::Collector) that reads the facts where they
//! already live (atomic counters, the store's state, the queue's stats): the hot paths pay only
//! an atomic add, and a scrape costs a walk over the groups and disks.
//!
//! - [`histogram`]: [`LatencyHistogram`], fixed buckets in atomics (no lock per observation,
//!   unlike `prometheus_client`'s own histogram).
//! - [`build_info`]: the `rewind_build_info` collector.
//! - [`family`]: [`Family`], one metric's descriptor and its labelled samples.

pub mod build_info;
pub mod family;
pub mod histogram;

pub use build_info::BuildInfo;
pub use family::{Family, Labels};
pub use histogram::LatencyHistogram;

/// The content type of the OpenMetrics text that [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry's metrics as OpenMetrics text (what `GET /metrics` answers).
pub fn render(registry: &prometheus_client::registry::Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(64 << 10);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}
