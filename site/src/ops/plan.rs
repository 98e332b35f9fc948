//! A recovery plan run from the site. Its boot groups may live on several targets: the plan is
//! cut into *segments*, runs of consecutive boot groups whose machines' groups are all on one
//! target, and each segment runs as a plan of its own on that target (`POST /v1/plans/run`), in
//! the plan's order: a segment starts once the one before succeeded. Each target's steps are
//! recorded with the run; the run's RTO is from its start until the last machine of the last
//! segment was healthy.
//!
//! A target runs one plan at a time, so a target's boot groups must be consecutive in the plan
//! (one segment each); manual steps are refused (the site has no `continue`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rewind_mtd::api::plans::{RunRequest, RunState, RunStatus};
use rewind_mtd::plan::{Mode, Plan};

use super::call::TargetConn;
use crate::db::now_ms;
use crate::db::plans::PlanStep;
use crate::error::ApiError;
use crate::server::AppState;

/// How often a running segment's status is read.
const EVERY: Duration = Duration::from_millis(500);

/// Consecutive boot groups that run on one target, as a plan file of their own.
#[derive(Clone, Debug)]
pub struct Segment {
    pub target: String,
    pub boot_groups: Vec<String>,
    /// The segment's plan TOML (the plan's name, its boot groups verbatim).
    pub text: String,
}

/// Parse and validate a plan's text (`name` must be the plan's `name`).
pub fn parse(name: &str, text: &str) -> Result<Plan, ApiError> {
    let plan = Plan::parse(Path::new(&format!("plan {name}")), text)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if plan.name != name {
        return Err(ApiError::bad_request(format!(
            "plan {name}: the file's name is {:?}: give the same name",
            plan.name
        )));
    }
    if let Some(bg) = plan.boot_groups.iter().find(|b| b.manual.is_some()) {
        return Err(ApiError::bad_request(format!(
            "plan {name}: boot group {:?} has a manual step: plans run from the site cannot \
             wait for one (use a post hook, or run the plan on its target)",
            bg.name
        )));
    }
    Ok(plan)
}

/// Cut the plan into segments by the targets that own its machines' groups now.
pub async fn segments(st: &AppState, name: &str, text: &str) -> Result<Vec<Segment>, ApiError> {
    let plan = parse(name, text)?;
    let mut owners: Vec<String> = Vec::new();
    for bg in &plan.boot_groups {
        let mut ts = BTreeSet::new();
        for m in &bg.machines {
            let owner = st.db.group_owner(&m.group).await?.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "plan {name}: boot group {:?} machine {:?}: no group {:?} on any target \
                     (see `rewind-site groups`)",
                    bg.name, m.name, m.group
                ))
            })?;
            ts.insert(owner);
        }
        if ts.len() > 1 {
            return Err(ApiError::bad_request(format!(
                "plan {name}: boot group {:?} spans targets {}: each boot group runs on one \
                 target (split it)",
                bg.name,
                ts.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        // A boot group without machines (hooks only) runs with the one before (or after).
        owners.push(ts.into_iter().next().unwrap_or_default());
    }
    fill_hook_only(&mut owners);
    let raw: toml::Table =
        toml::from_str(text).map_err(|e| ApiError::bad_request(format!("plan {name}: {e}")))?;
    let raw_groups = raw
        .get("boot_group")
        .and_then(|b| b.as_array())
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Segment> = Vec::new();
    for (i, bg) in plan.boot_groups.iter().enumerate() {
        let t = &owners[i];
        match out.last_mut() {
            Some(s) if &s.target == t => s.boot_groups.push(bg.name.clone()),
            _ => {
                if out.iter().any(|s| &s.target == t) {
                    return Err(ApiError::bad_request(format!(
                        "plan {name}: boot group {:?} is on target {t} again after others: a \
                         target runs one plan at a time, so order its boot groups together",
                        bg.name
                    )));
                }
                out.push(Segment {
                    target: t.clone(),
                    boot_groups: vec![bg.name.clone()],
                    text: String::new(),
                });
            }
        }
    }
    let mut first = 0;
    for s in &mut out {
        let n = s.boot_groups.len();
        let mut t = toml::Table::new();
        t.insert("name".into(), toml::Value::String(name.to_string()));
        t.insert(
            "boot_group".into(),
            toml::Value::Array(raw_groups[first..first + n].to_vec()),
        );
        first += n;
        s.text = toml::to_string(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(out)
}

/// Boot groups of hooks only take the target of the nearest boot group before them (or after).
fn fill_hook_only(owners: &mut [String]) {
    for i in 1..owners.len() {
        if owners[i].is_empty() {
            owners[i] = owners[i - 1].clone();
        }
    }
    for i in (0..owners.len().saturating_sub(1)).rev() {
        if owners[i].is_empty() {
            owners[i] = owners[i + 1].clone();
        }
    }
}

/// The request that runs a segment on its target.
pub fn run_request(name: &str, seg: &Segment, mode: Mode, point: Option<String>) -> RunRequest {
    RunRequest {
        path: format!("site:{name}@{}", seg.target).into(),
        text: seg.text.clone(),
        mode: mode.as_str().to_string(),
        point,
    }
}

fn steps_of(target: &str, s: &RunStatus) -> Vec<PlanStep> {
    s.steps
        .iter()
        .map(|x| PlanStep {
            target: target.to_string(),
            kind: serde_json::to_value(x.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            boot_group: x.boot_group.clone().unwrap_or_default(),
            machine: x.machine.clone().unwrap_or_default(),
            started_ms: x.started_ms as i64,
            ended_ms: x.ended_ms.unwrap_or(0) as i64,
            outcome: serde_json::to_value(x.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            message: x.message.clone(),
        })
        .collect()
}

/// A started run: its segments, their connections, and the first segment's status (started
/// before the API answered, so the first target's refusal is the caller's error).
pub struct Started {
    pub run: i64,
    pub job: i64,
    pub name: String,
    pub mode: Mode,
    pub point: Option<String>,
    pub segments: Vec<(Segment, TargetConn)>,
    pub first: RunStatus,
    pub started_ms: i64,
}

/// Run the segments in order (the first is running already); the run's record and the job's end.
pub async fn run(st: AppState, s: Started) {
    let total = s.segments.len() as i64 * 100;
    let r = run_segments(&st, &s).await;
    let (state, rto, detail) = match &r {
        Ok(rto) => (
            "succeeded",
            *rto,
            format!(
                "plan {} ({} mode) ran on {}; RTO {:.1} s{}",
                s.name,
                s.mode.as_str(),
                s.segments
                    .iter()
                    .map(|(g, _)| g.target.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                *rto as f64 / 1000.0,
                if s.mode == Mode::Test {
                    format!(
                        " (test machines stay up: POST /v1/plans/{}/cleanup)",
                        s.name
                    )
                } else {
                    String::new()
                }
            ),
        ),
        Err(e) => ("failed", -1, e.clone()),
    };
    if let Err(e) = st.db.end_plan_run(s.run, state, rto, &detail).await {
        tracing::warn!(run = s.run, error = %e, "recording the end of a plan run");
    }
    let _ = st.db.event("plan.run", &s.name, &detail).await;
    super::mirror::finish(&st, s.job, total, r.map(|_| detail)).await;
}

async fn run_segments(st: &AppState, s: &Started) -> Result<i64, String> {
    let mut step_base = 0_i64;
    let mut rto_end = 0_i64;
    for (i, (seg, tc)) in s.segments.iter().enumerate() {
        let mut status = if i == 0 {
            s.first.clone()
        } else {
            let req = run_request(&s.name, seg, s.mode, s.point.clone());
            tc.call_as::<RunStatus>(
                "POST",
                "/v1/plans/run",
                Some(&serde_json::to_value(&req).unwrap_or_default()),
            )
            .await
            .map_err(|e| {
                format!(
                    "boot groups {} on target {}: {}",
                    seg.boot_groups.join(", "),
                    seg.target,
                    e.message
                )
            })?
        };
        let mut last = (-1_i64, 0usize);
        let mut unreachable = 0u32;
        loop {
            let steps = steps_of(&seg.target, &status);
            let done = i as i64 * 100 + status.progress_percent as i64;
            if (done, steps.len()) != last || status.state.is_finished() {
                st.db
                    .record_plan_steps(s.run, step_base, &steps)
                    .await
                    .map_err(|e| e.message)?;
                let detail = format!(
                    "boot groups {} on target {}: {:?}, {}/{} machines healthy",
                    seg.boot_groups.join(", "),
                    seg.target,
                    status.state,
                    status.machines_healthy,
                    status.machines_total
                );
                st.db
                    .job_step(s.job, done, "running", &detail)
                    .await
                    .map_err(|e| e.message)?;
                last = (done, steps.len());
            }
            match status.state {
                RunState::Succeeded => break,
                RunState::Failed | RunState::Cleaned => {
                    return Err(format!(
                        "boot groups {} on target {} {:?}: {}",
                        seg.boot_groups.join(", "),
                        seg.target,
                        status.state,
                        status.error.clone().unwrap_or_default()
                    ));
                }
                RunState::Waiting => {
                    return Err(format!(
                        "target {} waits for a manual step: {}",
                        seg.target,
                        status.manual.clone().unwrap_or_default()
                    ));
                }
                RunState::Running => {}
            }
            tokio::time::sleep(EVERY).await;
            match tc
                .call_as::<RunStatus>("GET", "/v1/plans/current", None)
                .await
            {
                Ok(x) => {
                    unreachable = 0;
                    status = x;
                }
                Err(e) => {
                    unreachable += 1;
                    if unreachable > 120 {
                        return Err(format!("lost target {}: {}", seg.target, e.message));
                    }
                }
            }
        }
        step_base += status.steps.len() as i64;
        rto_end = status
            .rto_ms
            .map(|r| status.started_ms as i64 + r as i64)
            .unwrap_or_else(now_ms);
    }
    Ok(rto_end - s.started_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_only_boot_groups_run_with_their_neighbours() {
        let mut o = vec!["".to_string(), "a".into(), "".into(), "b".into(), "".into()];
        fill_hook_only(&mut o);
        assert_eq!(o, ["a", "a", "a", "b", "b"]);
    }

    #[test]
    fn manual_steps_and_other_names_are_refused() {
        let text = "name = \"p\"\n[[boot_group]]\nname = \"g\"\nmanual = \"check\"\n\
                    [[boot_group.machine]]\nname = \"m\"\ngroup = \"x\"\nboot = \"true\"\n\
                    health = { command = \"true\" }\n";
        let e = parse("p", text).unwrap_err();
        assert!(e.message.contains("manual step"), "{}", e.message);
        let e = parse("q", text).unwrap_err();
        assert!(e.message.contains("give the same name"), "{}", e.message);
        let e = parse("p", "name = \"p\"\n[[boot_group]]\n").unwrap_err();
        assert!(e.message.starts_with("plan p:"), "{}", e.message);
    }
}
