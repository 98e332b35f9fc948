//! One group: its RPO over time against its target, churn against bytes sent and on the wire, the
//! journal, the history window and journal forecast, the points timeline (tags, app-consistent
//! marks), its disks, and the actions an operator may take (through the site's operation routes,
//! each a job followed live).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use rewind_mtd::api::points::PointsReport;
use serde::Deserialize;

use super::chart::{self, fmt_bytes, Line};
use super::facts::{self, GroupRow};
use super::forecast;
use super::layout;
use super::overview::rpo_text;
use super::samples::{self, Sample};
use super::session::{Session, Viewer};
use crate::db::now_ms;
use crate::error::ApiError;
use crate::server::AppState;

/// The windows the charts offer.
const WINDOWS: [(&str, i64); 5] = [
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 24 * 3600),
    ("7d", 7 * 86400),
    ("30d", 30 * 86400),
];

#[derive(Deserialize)]
pub struct Window {
    window: Option<String>,
}

pub async fn page(
    State(st): State<AppState>,
    Viewer(s): Viewer,
    Path(group): Path<String>,
    Query(w): Query<Window>,
) -> Response {
    match body(&st, &s, &group, w.window.as_deref().unwrap_or("1h")).await {
        Ok(m) => layout::ok(&s, &format!("Group {group}"), m),
        Err(e) => layout::error(Some(&s), &e),
    }
}

/// The target's points report for the group (None, with why, if it does not answer).
async fn points(st: &AppState, g: &GroupRow) -> Result<PointsReport, String> {
    let t = st.db.target(&g.target).await.map_err(|e| e.message)?;
    let h = crate::targets::client(&st.state, &t.url, Duration::from_secs(3))
        .map_err(|e| format!("{e:#}"))?;
    let v = crate::targets::get_json(&h, &format!("/v1/groups/{}/points", g.name))
        .await
        .map_err(|e| format!("{e:#}"))?;
    serde_json::from_value(v).map_err(|e| format!("the target's points report: {e}"))
}

fn ms_of(time: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(time)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

async fn body(st: &AppState, s: &Session, group: &str, window: &str) -> Result<Markup, ApiError> {
    crate::names::check("group name", group)?;
    let secs = WINDOWS
        .iter()
        .find(|w| w.0 == window)
        .map(|w| w.1)
        .ok_or_else(|| {
            ApiError::bad_request(format!("window {window:?}: give 1h, 6h, 24h, 7d or 30d"))
        })?;
    let now = now_ms();
    let g = facts::groups(&st.db, now, Some(group))
        .await?
        .pop()
        .ok_or_else(|| {
            ApiError::not_found(format!("group {group}: the site knows no such group"))
        })?;
    let from = now - secs * 1000;
    let series = samples::series(&st.db, group, from).await?;
    let disks: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, size_bytes FROM disks WHERE group_name = $1 ORDER BY name")
            .bind(group)
            .fetch_all(&st.db.pool)
            .await?;
    let pts = points(st, &g).await;
    let history_s = pts.as_ref().ok().and_then(|p| {
        let (o, n) = (
            ms_of(&p.oldest.as_ref()?.time)?,
            ms_of(&p.newest.as_ref()?.time)?,
        );
        Some((n - o).max(0) / 1000)
    });
    let fc = forecast::gather(&st.db, &g, history_s, now).await?;
    let drill: Option<(i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT drill_last_ok, drill_last_ms, drill_ok_ms, drill_verified_seq, drill_summary \
         FROM groups WHERE name = $1",
    )
    .bind(group)
    .fetch_optional(&st.db.pool)
    .await?;
    Ok(html! {
        section.cards #stats data-live="stats" {
            div class=(format!("card {}", g.health())) { span.value #rpo { (rpo_text(g.rpo_ms)) } span.label { (if g.rpo_measured { "RPO (the agent's)" } else { "RPO (the site's bound)" }) } }
            div.card { span.value { (if g.rpo_target_ms > 0 { rpo_text(g.rpo_target_ms) } else { "none".into() }) } span.label { "RPO target" } }
            div.card { span.value #state { (g.state) } span.label { "state on " (g.target) } }
            div.card { span.value { (if g.agent_mode.is_empty() { "—" } else { g.agent_mode.as_str() }) } span.label { "agent mode" } }
            div.card { span.value { (if g.policy.is_empty() { "none" } else { g.policy.as_str() }) } span.label { "policy" } }
            div.card { span.value { (fmt_bytes(g.journal_bytes as f64)) } span.label { "journal" } }
            div.card { span.value { (g.durable_seq) } span.label { "durable seq" } }
        }
        nav.windows { "Window: " @for (w, _) in WINDOWS {
            a class=(if w == window { "on" } else { "" }) href=(format!("?window={w}")) { (w) }
        } }
        section.charts #charts data-live="charts" { (charts(&series, from, now, &g)) }
        @if let Some(d) = &drill { (drill_panel(d)) }
        (forecast::panel(&fc, &g.target))
        section #history {
            h2 { "Points" }
            @match &pts {
                Err(why) => p.error { "The target does not answer: " (why) },
                Ok(p) => (timeline(p, &g.retention)),
            }
        }
        section #disks {
            h2 { "Disks" }
            table { thead { tr { th { "Disk" } th { "Size" } } }
                tbody { @for (d, size) in &disks { tr { td { (d) } td { (fmt_bytes(*size as f64)) } } } } }
        }
        @if s.may_act() { (actions(group, pts.as_ref().ok())) }
        section #group-jobs { h2 { "Jobs of this group" } div #live-jobs data-subject=(group) {} }
    })
}

fn charts(series: &[Sample], from: i64, now: i64, g: &GroupRow) -> Markup {
    let rpo = series
        .iter()
        .map(|s| (s.at_ms, s.rpo_ms as f64 / 1000.0))
        .collect();
    let rate = |v: i64, s: &Sample| v as f64 / s.res_s as f64;
    let applied = series
        .iter()
        .map(|s| (s.at_ms, rate(s.applied_bytes, s)))
        .collect();
    let records = series
        .iter()
        .map(|s| (s.at_ms, rate(s.records, s)))
        .collect();
    let journal = series
        .iter()
        .map(|s| (s.at_ms, s.journal_bytes as f64))
        .collect();
    let target = (g.rpo_target_ms > 0).then(|| ("target", g.rpo_target_ms as f64 / 1000.0));
    html! {
        (chart::chart("RPO over time", "s", from, now, &[Line { label: "RPO", class: "rpo", points: rpo }], target))
        (chart::chart("Churn, bytes sent and bytes on the wire, per second", "B", from, now, &[
            Line { label: "churn (written at the source) / s", class: "captured", points: samples::rates(series, |s| s.captured_total) },
            Line { label: "sent (before compression) / s", class: "sent", points: samples::rates(series, |s| s.sent_total) },
            Line { label: "on the wire / s", class: "wire", points: samples::rates(series, |s| s.wire_total) },
            Line { label: "applied at the target / s", class: "applied", points: applied },
        ], None))
        (chart::chart("Records made durable per second", "rec", from, now, &[Line { label: "records / s", class: "records", points: records }], None))
        (chart::chart("Journal size", "B", from, now, &[Line { label: "journal bytes", class: "journal", points: journal }], None))
    }
}

/// The group's drills as its target reports them: the last verified point (the newest point a
/// drill booted and probed successfully) and how the last drill went.
fn drill_panel(
    &(last_ok, last_ms, ok_ms, seq, ref summary): &(i64, i64, i64, i64, String),
) -> Markup {
    let when = |ms: i64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
            .to_string()
    };
    html! {
        section #drills {
            h2 { "Drills" }
            p #verified {
                @if seq >= 0 && ok_ms > 0 {
                    "Last verified point: seq " strong { (seq) } ", proved by a drill that ended " (when(ok_ms)) "."
                } @else { "No drill has verified a point yet." }
            }
            @if last_ok >= 0 {
                p #last-drill class=(if last_ok == 1 { "" } else { "warn" }) {
                    (if last_ok == 1 { "Last drill passed" } else { "Last drill FAILED" })
                    " (" (when(last_ms)) ")"
                    @if !summary.is_empty() { ": " (summary) }
                }
            }
        }
    }
}

fn timeline(p: &PointsReport, retention: &str) -> Markup {
    let oldest = p.oldest.as_ref().and_then(|o| ms_of(&o.time));
    let newest = p.newest.as_ref().and_then(|o| ms_of(&o.time));
    let span = match (oldest, newest) {
        (Some(a), Some(b)) if b > a => Some((a, b)),
        _ => None,
    };
    let x = |t: i64, (a, b): (i64, i64)| 10.0 + (t - a) as f64 / (b - a) as f64 * 700.0;
    html! {
        p {
            "Retention " strong { (if retention.is_empty() { "—" } else { retention }) } ". "
            @if let (Some(o), Some(n)) = (&p.oldest, &p.newest) {
                "Points from " strong #oldest { (o.time) } " (seq " (o.seq) ") to " strong #newest { (n.time) } " (seq " (n.seq) ")"
                @if let Some((a, b)) = span { ": " (humantime::format_duration(Duration::from_secs(((b - a) / 1000) as u64))) " of history." }
            } @else { "No points yet." }
            @if !p.consistent { " " span.warn { "A resync is running: the newest points are not recoverable yet." } }
        }
        @if let Some(sp) = span {
            svg.timeline viewBox="0 0 720 40" role="img" aria-label="points timeline" {
                line.axis x1="10" y1="20" x2="710" y2="20" {}
                @for t in &p.tags {
                    @if let Some(ms) = ms_of(&t.time).filter(|m| *m >= sp.0 && *m <= sp.1) {
                        @let app = matches!(t.kind, rewind_formats::TagKind::AppConsistent);
                        circle class=(if app { "tag app" } else { "tag" }) cx=(format!("{:.1}", x(ms, sp))) cy="20" r=(if app { "6" } else { "4" }) {
                            title { (t.name) " (seq " (t.seq) ")" }
                        }
                    }
                }
            }
        }
        table #points { thead { tr { th { "Tag" } th { "Kind" } th { "Seq" } th { "Time" } } }
            tbody { @for t in p.tags.iter().rev().take(50) {
                tr class=(if matches!(t.kind, rewind_formats::TagKind::AppConsistent) { "app" } else { "" }) {
                    td { (t.name) } td { (serde_json::to_value(t.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                    td { (t.seq) } td { (t.time) }
                }
            } }
        }
    }
}

/// A point picker: latest, the newest named points, or a seq typed in.
fn picker(p: Option<&PointsReport>) -> Markup {
    html! {
        select name="point" {
            option value="latest" { "latest" }
            @if let Some(p) = p {
                @if let Some(a) = &p.latest_app_consistent { option value=(format!("tag:{}", a.name)) { "app-consistent " (a.name) } }
                @for t in p.tags.iter().rev().take(20) { option value=(format!("tag:{}", t.name)) { "tag " (t.name) " (" (t.time) ")" } }
                @if let Some(n) = &p.newest { option value=(format!("seq:{}", n.seq)) { "seq " (n.seq) " (newest)" } }
            }
        }
    }
}

fn action(title: &str, url: &str, confirm: Option<&str>, fields: Markup, button: &str) -> Markup {
    html! {
        form.act-form data-url=(url) data-confirm=[confirm] {
            h3 { (title) }
            (fields)
            @if let Some(c) = confirm { label { "Type " code { (c) } " to confirm " input name="confirm" autocomplete="off"; } }
            button type="submit" { (button) }
        }
    }
}

fn actions(group: &str, p: Option<&PointsReport>) -> Markup {
    let u = |op: &str| format!("/v1/groups/{group}/{op}");
    html! {
        section #actions {
            h2 { "Actions" }
            div.actions {
                (action("Tag now", &u("tag"), None, html! { input name="name" placeholder="tag name" required; }, "Tag"))
                (action("Test failover", &u("failover/test"), None, picker(p), "Start test failover"))
                (action("Clean up", &u("failover/cleanup"), None, html! {}, "Clean up"))
                (action("Change point", &u("failover/change-point"), None, picker(p), "Change point"))
                (action("Planned failover", &u("failover/planned"), Some(group), html! {}, "Planned failover"))
                (action("Unplanned failover", &u("failover/unplanned"), Some(group), picker(p), "Unplanned failover"))
                (action("Commit", &u("failover/commit"), Some(group), html! {}, "Commit"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drill_panel_shows_the_verified_point_and_a_failure() {
        let day = 86_400_000;
        let m = drill_panel(&(0, 2 * day, day, 42, "console probe: no match".into())).into_string();
        assert!(m.contains("seq <strong>42</strong>"), "{m}");
        assert!(m.contains("1970-01-02T00:00:00Z"), "{m}");
        assert!(
            m.contains("Last drill FAILED (1970-01-03T00:00:00Z): console probe"),
            "{m}"
        );
        let none = drill_panel(&(-1, 0, 0, -1, String::new())).into_string();
        assert!(none.contains("No drill has verified a point yet"), "{none}");
        assert!(!none.contains("last-drill"), "{none}");
    }
}
