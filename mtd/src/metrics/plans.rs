//! The recovery plan run last: its state, the step it is at, its progress and measured RTO.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use rewind_linux::metrics::Family;

use super::Parts;
use crate::plan::Outcome;

const STATES: [&str; 5] = ["running", "waiting", "succeeded", "failed", "cleaned"];

/// A serde enum's lowercase name (the API's spelling).
fn name_of(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The collector.
#[derive(Debug)]
pub struct Plans(pub Parts);

impl Collector for Plans {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let run = self
            .0
             .0
            .plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(run) = run else {
            return Ok(());
        };
        let st = run.status();
        let mode = name_of(st.mode);
        let state = name_of(st.state);
        let labels = [("plan", st.plan.as_str()), ("mode", mode.as_str())];
        Family::gauge(
            &mut enc,
            "rewind_plan_state",
            "1 for the state of the recovery plan run last.",
        )?
        .one_hot(&labels, "state", &STATES, |s| s == state)?;
        let current = st
            .steps
            .iter()
            .rev()
            .find(|s| matches!(s.outcome, Outcome::Running | Outcome::Waiting));
        let mut f = Family::gauge(
            &mut enc,
            "rewind_plan_step",
            "The step the plan run is at: its number (from 1) and kind; absent once finished.",
        )?;
        if let Some(step) = current {
            let n = st
                .steps
                .iter()
                .position(|s| std::ptr::eq(s, step))
                .unwrap_or(0)
                + 1;
            let kind = name_of(step.kind);
            f.gauge_at(&[labels[0], labels[1], ("kind", &kind)], n as u64)?;
        }
        Family::gauge(
            &mut enc,
            "rewind_plan_progress_ratio",
            "How far the plan run is, 0 to 1.",
        )?
        .gauge_at(&labels, f64::from(st.progress_percent) / 100.0)?;
        let mut f = Family::gauge(
            &mut enc,
            "rewind_plan_rto_seconds",
            "The RTO the plan run measured (from its start to every machine healthy).",
        )?;
        if let Some(ms) = st.rto_ms {
            f.gauge_at(&labels, super::seconds(ms))?;
        }
        Ok(())
    }
}
