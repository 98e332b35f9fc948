//! The overview: stat cards, every group as a cell of a heat grid (its RPO against its target),
//! the worst offenders, open alerts and running jobs.

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};

use super::chart::fmt_bytes;
use super::facts::{self, GroupRow};
use super::layout::{self, when};
use super::session::Viewer;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::server::AppState;

/// How many offenders the table lists.
const WORST: usize = 10;

/// RPO in seconds, one decimal.
pub fn rpo_text(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn target_text(ms: i64) -> String {
    if ms > 0 {
        rpo_text(ms)
    } else {
        "none".into()
    }
}

pub async fn page(State(st): State<AppState>, Viewer(s): Viewer) -> Response {
    match body(&st).await {
        Ok(m) => layout::ok(&s, "Overview", m),
        Err(e) => layout::error(Some(&s), &e),
    }
}

fn card(label: &str, value: String, class: &str) -> Markup {
    html! { div class=(format!("card {class}")) { span.value { (value) } span.label { (label) } } }
}

async fn body(st: &AppState) -> Result<Markup, ApiError> {
    let now = now_ms();
    let groups = facts::groups(&st.db, now, None).await?;
    let targets = st.db.targets().await?;
    let alerts = st.db.alerts(false, 1000).await?;
    let jobs: Vec<_> = st
        .db
        .jobs(200)
        .await?
        .into_iter()
        .filter(|j| j.state == "running")
        .collect();
    let count = |h: &str| groups.iter().filter(|g| g.health() == h).count();
    let over = groups.iter().filter(|g| g.rpo_ratio() > 1.0).count();
    let up = targets.iter().filter(|t| t.state == "up").count();
    let journal: i64 = groups.iter().map(|g| g.journal_bytes).sum();
    let mut worst: Vec<&GroupRow> = groups
        .iter()
        .filter(|g| g.health() != "good" || g.rpo_ms > 0)
        .collect();
    worst.sort_by(|a, b| {
        b.rpo_ratio()
            .total_cmp(&a.rpo_ratio())
            .then(b.rpo_ms.cmp(&a.rpo_ms))
    });
    worst.truncate(WORST);
    Ok(html! {
        section.cards data-live="cards" id="cards" {
            (card("groups", groups.len().to_string(), ""))
            (card("healthy", count("good").to_string(), "good"))
            (card("at risk", count("warn").to_string(), "warn"))
            (card("failing", count("bad").to_string(), "bad"))
            (card("over RPO target", over.to_string(), if over > 0 { "bad" } else { "good" }))
            (card("targets up", format!("{up} / {}", targets.len()), if up < targets.len() { "bad" } else { "good" }))
            (card("open alerts", alerts.len().to_string(), if alerts.is_empty() { "good" } else { "bad" }))
            (card("running jobs", jobs.len().to_string(), ""))
            (card("journals", fmt_bytes(journal as f64), ""))
        }
        section data-live="grid" id="grid" {
            h2 { "Groups: RPO against target" }
            div.heat {
                @for g in &groups {
                    a class=(format!("cell {}", g.health())) href=(format!("/console/groups/{}", g.name))
                      title=(format!("{}: {} ({}), RPO {} of {}", g.name, g.state, g.target, rpo_text(g.rpo_ms), target_text(g.rpo_target_ms))) {}
                }
            }
        }
        section data-live="worst" id="worst" {
            h2 { "Worst offenders" }
            @if worst.is_empty() { p.quiet { "Every group is fed and within its RPO target." } }
            @else {
                table { thead { tr { th { "Group" } th { "Target" } th { "State" } th { "RPO" } th { "RPO target" } } }
                    tbody { @for g in &worst {
                        tr class=(g.health()) {
                            td { a href=(format!("/console/groups/{}", g.name)) { (g.name) } }
                            td { (g.target) } td { (g.state) }
                            td.rpo { (rpo_text(g.rpo_ms)) } td { (target_text(g.rpo_target_ms)) }
                        }
                    } }
                }
            }
        }
        section data-live="open-alerts" id="open-alerts" {
            h2 { "Open alerts" }
            @if alerts.is_empty() { p.quiet { "None." } }
            @else {
                table { thead { tr { th { "Severity" } th { "Kind" } th { "Subject" } th { "Since" } th { "Summary" } } }
                    tbody { @for a in &alerts {
                        tr class=(a.severity) data-alert=(a.kind) {
                            td { (a.severity) } td { (a.kind) } td { (a.subject) }
                            td { (when(a.fired_ms)) } td { (a.summary) }
                        }
                    } }
                }
            }
        }
        section data-live="running" id="running" {
            h2 { "Running jobs" }
            @if jobs.is_empty() { p.quiet { "None." } }
            @else { (super::lists::jobs_table(&jobs)) }
        }
    })
}
