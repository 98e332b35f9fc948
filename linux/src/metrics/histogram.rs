//! A latency histogram that a hot path can feed without a lock or an allocation.
//!
//! `prometheus_client`'s `Histogram` takes a lock on every observation; the capture and apply
//! paths observe once per write, so this one keeps a count per bucket in an atomic and the sum
//! in nanoseconds, and builds the cumulative buckets only when scraped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::MetricEncoder;
use prometheus_client::metrics::exemplar::Exemplar;

/// Bucket bounds (seconds) for disk and network latencies: 50 µs to 10 s, about three per
/// decade, so a p99 from `histogram_quantile` is within a factor of ~2 anywhere in the range.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// The exemplars a histogram sample may carry: none here.
type NoExemplars = HashMap<usize, Exemplar<Vec<(String, String)>, f64>>;

/// Observations of durations, counted per bucket (see the module doc).
#[derive(Debug)]
pub struct LatencyHistogram {
    /// Upper bounds in seconds (for the text) and in nanoseconds (for the hot path).
    bounds: &'static [f64],
    bounds_ns: Box<[u64]>,
    /// Observations per bucket, not cumulative; the last one is +Inf.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new(LATENCY_BUCKETS)
    }
}

impl LatencyHistogram {
    /// A histogram with these upper bounds (seconds, increasing).
    pub fn new(bounds: &'static [f64]) -> LatencyHistogram {
        debug_assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "bounds must increase"
        );
        LatencyHistogram {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one observation: two relaxed atomic adds.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self.bounds_ns.partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes one histogram sample set (the caller has written the descriptor and labels).
    pub fn encode(&self, m: &mut MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // The encoder takes counts per bucket and sums them itself; `f64::MAX` is its +Inf.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let none: Option<&NoExemplars> = None;
        m.encode_histogram(sum, count, &buckets, none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Family;
    use prometheus_client::encoding::DescriptorEncoder;

    #[derive(Debug)]
    struct One(LatencyHistogram);

    impl prometheus_client::collector::Collector for One {
        fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            let mut f = Family::histogram(&mut enc, "t_seconds", "test")?;
            f.histogram_at(&[("k", "v")], &self.0)
        }
    }

    #[test]
    fn observations_land_in_their_buckets_and_encode_cumulatively() {
        let h = LatencyHistogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on the bound: le="0.001" holds it
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        assert_eq!(h.count(), 4);
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(One(h)));
        let text = crate::metrics::render(&reg).unwrap();
        for line in [
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{le=\"0.001\",k=\"v\"} 2",
            "t_seconds_bucket{le=\"0.01\",k=\"v\"} 3",
            "t_seconds_bucket{le=\"+Inf\",k=\"v\"} 4",
            "t_seconds_count{k=\"v\"} 4",
            "t_seconds_sum{k=\"v\"} 3.0065",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
    }
}
