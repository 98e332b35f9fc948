//! One metric family written at scrape time: its `# HELP`/`# TYPE` lines, then one sample per
//! label set. Collectors use it so that each metric is named, typed and explained in one line.

use std::borrow::Cow;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::LatencyHistogram;

/// Label pairs of one sample, e.g. `&[("group", "web"), ("disk", "sda")]`.
pub type Labels<'a> = [(&'a str, &'a str)];

/// A metric family being written (see the module doc).
pub struct Family<'a> {
    enc: MetricEncoder<'a>,
}

impl<'a> Family<'a> {
    fn new(
        enc: &'a mut DescriptorEncoder<'_>,
        name: &'a str,
        help: &str,
        kind: MetricType,
    ) -> Result<Family<'a>, std::fmt::Error> {
        Ok(Family {
            enc: enc.encode_descriptor(name, help, None, kind)?,
        })
    }

    /// A gauge family `name`.
    pub fn gauge(
        enc: &'a mut DescriptorEncoder<'_>,
        name: &'a str,
        help: &str,
    ) -> Result<Family<'a>, std::fmt::Error> {
        Self::new(enc, name, help, MetricType::Gauge)
    }

    /// A counter family: `name` without `_total`, which the encoder appends to each sample.
    pub fn counter(
        enc: &'a mut DescriptorEncoder<'_>,
        name: &'a str,
        help: &str,
    ) -> Result<Family<'a>, std::fmt::Error> {
        debug_assert!(!name.ends_with("_total"), "the encoder adds _total");
        Self::new(enc, name, help, MetricType::Counter)
    }

    /// A histogram family.
    pub fn histogram(
        enc: &'a mut DescriptorEncoder<'_>,
        name: &'a str,
        help: &str,
    ) -> Result<Family<'a>, std::fmt::Error> {
        Self::new(enc, name, help, MetricType::Histogram)
    }

    /// An info family (`name` without `_info`, which the encoder appends).
    pub fn info(
        enc: &'a mut DescriptorEncoder<'_>,
        name: &'a str,
        help: &str,
    ) -> Result<Family<'a>, std::fmt::Error> {
        Self::new(enc, name, help, MetricType::Info)
    }

    /// One gauge sample.
    pub fn gauge_at(
        &mut self,
        labels: &Labels<'_>,
        v: impl EncodeGaugeValue,
    ) -> Result<(), std::fmt::Error> {
        if labels.is_empty() {
            return self.enc.encode_gauge(&v);
        }
        self.enc.encode_family(&escaped(labels))?.encode_gauge(&v)
    }

    /// One counter sample.
    pub fn counter_at(
        &mut self,
        labels: &Labels<'_>,
        v: impl EncodeCounterValue,
    ) -> Result<(), std::fmt::Error> {
        if labels.is_empty() {
            return self.enc.encode_counter::<NoLabelSet, _, u64>(&v, None);
        }
        self.enc
            .encode_family(&escaped(labels))?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)
    }

    /// One histogram's samples.
    pub fn histogram_at(
        &mut self,
        labels: &Labels<'_>,
        h: &LatencyHistogram,
    ) -> Result<(), std::fmt::Error> {
        if labels.is_empty() {
            return h.encode(&mut self.enc);
        }
        h.encode(&mut self.enc.encode_family(&escaped(labels))?)
    }

    /// The info sample (its labels are the information; the value is 1).
    pub fn info_at(&mut self, labels: &Labels<'_>) -> Result<(), std::fmt::Error> {
        self.enc.encode_info(&escaped(labels))
    }

    /// A one-hot set: one sample per `choices` value under `key`, 1 for `current` and 0 for the
    /// others (states as labels, so that a state that ends shows as 0, not as a missing series).
    pub fn one_hot(
        &mut self,
        labels: &Labels<'_>,
        key: &str,
        choices: &[&str],
        current: impl Fn(&str) -> bool,
    ) -> Result<(), std::fmt::Error> {
        let mut all: Vec<(&str, &str)> = labels.to_vec();
        all.push((key, ""));
        let last = all.len() - 1;
        for c in choices {
            all[last].1 = c;
            self.gauge_at(&all, u8::from(current(c)) as u32)?;
        }
        Ok(())
    }
}

/// The labels with their values escaped as the text format wants (`\\`, `\"`, `\n`):
/// `prometheus_client` writes values as given. Group and disk names are validated where they
/// enter (no quote, backslash or newline), so only a value from elsewhere is ever copied.
fn escaped<'a>(labels: &'a Labels<'a>) -> Vec<(&'a str, Cow<'a, str>)> {
    labels
        .iter()
        .map(|(k, v)| {
            let v = if v.contains(['\\', '"', '\n']) {
                Cow::Owned(
                    v.replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n"),
                )
            } else {
                Cow::Borrowed(*v)
            };
            (*k, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;

    #[derive(Debug)]
    struct Sample;

    impl Collector for Sample {
        fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            Family::counter(&mut enc, "x_bytes", "Bytes.")?
                .counter_at(&[("group", "g\"1")], 7u64)?;
            Family::gauge(&mut enc, "x_state", "State.")?.one_hot(
                &[("group", "g")],
                "state",
                &["up", "down"],
                |s| s == "down",
            )?;
            Family::gauge(&mut enc, "x_seconds", "Seconds.")?.gauge_at(&[], 1.5)
        }
    }

    #[test]
    fn counters_gauges_and_states_encode_as_openmetrics() {
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(Sample));
        let text = crate::metrics::render(&reg).unwrap();
        let want = "# HELP x_bytes Bytes.\n# TYPE x_bytes counter\n\
                    x_bytes_total{group=\"g\\\"1\"} 7\n\
                    # HELP x_state State.\n# TYPE x_state gauge\n\
                    x_state{group=\"g\",state=\"up\"} 0\n\
                    x_state{group=\"g\",state=\"down\"} 1\n\
                    # HELP x_seconds Seconds.\n# TYPE x_seconds gauge\nx_seconds 1.5\n# EOF\n";
        assert_eq!(text, want);
    }
}
