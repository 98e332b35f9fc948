//! `journal_forecast`: a target's data file system that will be full within
//! [`HORIZON_MS`] at the rate it has been filling (what Prometheus users get from
//! `predict_linear` over the free-space metric, `docs/prometheus/`). The leader samples each
//! target's use at most once a minute and keeps [`WINDOW_MS`] of samples in memory; a least-squares
//! line through them gives the rate. A new leader starts from nothing and forecasts again once it
//! has [`MIN_SPAN_MS`] of samples.

use std::collections::{HashMap, VecDeque};

use super::conditions::{Firing, TargetFacts};

/// How far ahead a fill is worth an alert (two days, as the shipped Prometheus rule).
pub const HORIZON_MS: i64 = 2 * 24 * 3_600_000;
/// Samples older than this are dropped: the rate is the recent one.
pub const WINDOW_MS: i64 = 6 * 3_600_000;
/// No forecast from less than this much history (a burst is not a trend).
pub const MIN_SPAN_MS: i64 = 30 * 60_000;
/// At most one sample per target this often.
pub const SAMPLE_EVERY_MS: i64 = 60_000;

/// One target's use over time: (ms, used bytes).
#[derive(Clone, Debug, Default)]
pub struct Trend {
    samples: VecDeque<(i64, f64)>,
}

impl Trend {
    /// Adds a sample (skipped if the last one is younger than [`SAMPLE_EVERY_MS`]) and drops
    /// those out of the window.
    pub fn sample(&mut self, at_ms: i64, used: f64) {
        if self
            .samples
            .back()
            .is_some_and(|(t, _)| at_ms - t < SAMPLE_EVERY_MS)
        {
            return;
        }
        self.samples.push_back((at_ms, used));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at_ms - t > WINDOW_MS)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per ms the use grows by (least squares), if the samples span [`MIN_SPAN_MS`].
    pub fn rate(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if last.0 - first.0 < MIN_SPAN_MS || self.samples.len() < 3 {
            return None;
        }
        let n = self.samples.len() as f64;
        // Centred on the first sample, so the sums stay small.
        let xs = self.samples.iter().map(|(t, _)| (t - first.0) as f64);
        let mean_x = xs.clone().sum::<f64>() / n;
        let mean_y = self.samples.iter().map(|(_, u)| u).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for ((x, (_, y)), _) in xs.zip(self.samples.iter()).zip(0..) {
            sxy += (x - mean_x) * (y - mean_y);
            sxx += (x - mean_x) * (x - mean_x);
        }
        (sxx > 0.0).then(|| sxy / sxx)
    }

    /// Milliseconds until the use reaches `capacity` at the current rate (None: not filling).
    pub fn ms_to_full(&self, capacity: f64) -> Option<i64> {
        let rate = self.rate()?;
        let used = self.samples.back()?.1;
        (rate > 0.0).then(|| ((capacity - used).max(0.0) / rate) as i64)
    }
}

/// Every target's trend, kept by the leader's alert loop.
#[derive(Debug, Default)]
pub struct Forecasts {
    targets: HashMap<String, Trend>,
}

impl Forecasts {
    /// Samples every target that is up and reports its capacity, and returns the forecasts that
    /// fire: full within [`HORIZON_MS`] (critical within a quarter of it).
    pub fn evaluate(&mut self, now_ms: i64, targets: &[TargetFacts]) -> Vec<Firing> {
        self.targets
            .retain(|name, _| targets.iter().any(|t| &t.name == name));
        let mut out = Vec::new();
        for t in targets {
            if t.state != "up" || t.capacity_bytes <= 0 || t.free_bytes < 0 {
                continue;
            }
            let capacity = t.capacity_bytes as f64;
            let trend = self.targets.entry(t.name.clone()).or_default();
            trend.sample(now_ms, capacity - t.free_bytes as f64);
            let Some(ms) = trend.ms_to_full(capacity) else {
                continue;
            };
            if ms <= HORIZON_MS {
                out.push(Firing {
                    kind: "journal_forecast",
                    subject: t.name.clone(),
                    severity: if ms <= HORIZON_MS / 4 {
                        "critical"
                    } else {
                        "warning"
                    },
                    summary: format!(
                        "target {}: its data file system fills in about {} h at the rate of \
                         the last hours ({} MiB free)",
                        t.name,
                        ms / 3_600_000,
                        t.free_bytes >> 20
                    ),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(free: i64) -> TargetFacts {
        TargetFacts {
            name: "t1".into(),
            state: "up".into(),
            free_bytes: free,
            capacity_bytes: 1000 << 30,
            ..TargetFacts::default()
        }
    }

    #[test]
    fn a_steady_fill_is_forecast_and_a_flat_one_is_not() {
        let mut f = Forecasts::default();
        // 10 GiB an hour out of 500 GiB free: full in about 50 h, just past the horizon.
        let gib = 1i64 << 30;
        let mut out = Vec::new();
        for minute in 0..=60 {
            let free = 500 * gib - 10 * gib * minute / 60;
            out = f.evaluate(minute * 60_000, &[target(free)]);
        }
        assert!(out.is_empty(), "{out:?}");
        // Twice the rate: full in about 24 h: a warning.
        let mut f = Forecasts::default();
        for minute in 0..=60 {
            let free = 480 * gib - 20 * gib * minute / 60;
            out = f.evaluate(minute * 60_000, &[target(free)]);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].kind, out[0].severity),
            ("journal_forecast", "warning")
        );
        assert!(out[0].summary.contains("about 23 h"), "{}", out[0].summary);
        // Flat use: nothing, however full.
        let mut f = Forecasts::default();
        for minute in 0..=60 {
            out = f.evaluate(minute * 60_000, &[target(gib)]);
        }
        assert!(out.is_empty());
        // Too little history: nothing yet.
        let mut f = Forecasts::default();
        for minute in 0..10 {
            out = f.evaluate(minute * 60_000, &[target(100 * gib - gib * minute)]);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn samples_are_spaced_and_windowed() {
        let mut t = Trend::default();
        for s in 0..120 {
            t.sample(s * 1000, s as f64);
        }
        assert_eq!(t.samples.len(), 2, "one a minute");
        let mut t = Trend::default();
        for m in 0..(8 * 60) {
            t.sample(m * 60_000, m as f64);
        }
        assert_eq!(t.samples.len(), 361, "six hours of minutes");
        let rate = t.rate().unwrap();
        assert!((rate - 1.0 / 60_000.0).abs() < 1e-12, "{rate}");
    }
}
