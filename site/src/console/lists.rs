//! The list pages: every group, master targets, alerts (acknowledge), jobs (live progress) and
//! the audit log (operators and admins, as in the API).

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};

use super::chart::fmt_bytes;
use super::facts;
use super::layout::{self, when};
use super::overview::rpo_text;
use super::session::Viewer;
use crate::api::Job;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::roles::Role;
use crate::server::AppState;

fn done(s: &super::session::Session, title: &str, r: Result<Markup, ApiError>) -> Response {
    match r {
        Ok(m) => layout::ok(s, title, m),
        Err(e) => layout::error(Some(s), &e),
    }
}

pub async fn groups(State(st): State<AppState>, Viewer(s): Viewer) -> Response {
    let r: Result<Markup, ApiError> = async {
        let gs = facts::groups(&st.db, now_ms(), None).await?;
        Ok(html! {
            table data-live="groups" id="groups" {
                thead { tr { th { "Group" } th { "Target" } th { "State" } th { "Policy" } th { "RPO" } th { "RPO target" } th { "Disks" } th { "Journal" } } }
                tbody { @for g in &gs {
                    tr class=(g.health()) {
                        td { a href=(format!("/console/groups/{}", g.name)) { (g.name) } }
                        td { (g.target) } td { (g.state) } td { (g.policy) }
                        td.rpo { (rpo_text(g.rpo_ms)) } td { (rpo_text(g.rpo_target_ms)) }
                        td { (g.disks) } td { (fmt_bytes(g.journal_bytes as f64)) }
                    }
                } }
            }
        })
    }
    .await;
    done(&s, "Groups", r)
}

pub async fn targets(State(st): State<AppState>, Viewer(s): Viewer) -> Response {
    let r: Result<Markup, ApiError> = async {
        let ts = st.db.targets().await?;
        let gs = facts::groups(&st.db, now_ms(), None).await?;
        Ok(html! {
            table data-live="targets" id="targets" {
                thead { tr { th { "Target" } th { "State" } th { "Version" } th { "Capacity" } th { "Free" } th { "Used" } th { "Journals" } th { "Groups" } th { "Last seen" } th { "Reason" } } }
                tbody { @for t in &ts {
                    @let n = gs.iter().filter(|g| g.target == t.name).count();
                    @let used = if t.capacity_bytes > 0 && t.free_bytes >= 0 {
                        format!("{:.1}%", 100.0 * (1.0 - t.free_bytes as f64 / t.capacity_bytes as f64))
                    } else { "—".to_string() };
                    tr class=(if t.state == "up" { "good" } else { "bad" }) data-target=(t.name) {
                        td { (t.name) } td.state { (t.state) } td { (t.version) }
                        td { (if t.capacity_bytes >= 0 { fmt_bytes(t.capacity_bytes as f64) } else { "—".into() }) }
                        td { (if t.free_bytes >= 0 { fmt_bytes(t.free_bytes as f64) } else { "—".into() }) }
                        td { (used) } td { (fmt_bytes(t.journal_bytes as f64)) } td { (n) }
                        td { (when(t.last_seen_ms)) } td { (t.reason) }
                    }
                } }
            }
        })
    }
    .await;
    done(&s, "Master targets", r)
}

pub async fn alerts(State(st): State<AppState>, Viewer(s): Viewer) -> Response {
    let act = s.may_act();
    let r: Result<Markup, ApiError> = async {
        let all = st.db.alerts(true, 500).await?;
        Ok(html! {
            table data-live="alerts" id="alerts" {
                thead { tr { th { "#" } th { "State" } th { "Severity" } th { "Kind" } th { "Subject" } th { "Fired" } th { "Resolved" } th { "Summary" } th { "Acknowledged" } } }
                tbody { @for a in &all {
                    tr class=(if a.state == "firing" { a.severity.as_str() } else { "resolved" }) data-alert=(a.kind) data-state=(a.state) {
                        td { (a.id) } td.state { (a.state) } td { (a.severity) } td { (a.kind) } td { (a.subject) }
                        td { (when(a.fired_ms)) } td { (when(a.resolved_ms)) } td { (a.summary) }
                        td {
                            @if !a.acked_by.is_empty() { (a.acked_by) }
                            @else if act && a.state == "firing" {
                                button.act data-method="POST" data-url=(format!("/v1/alerts/{}/ack", a.id)) { "Acknowledge" }
                            }
                        }
                    }
                } }
            }
        })
    }
    .await;
    done(&s, "Alerts", r)
}

/// Jobs as a table whose rows the script updates as progress events arrive.
pub fn jobs_table(jobs: &[Job]) -> Markup {
    html! {
        table.jobs {
            thead { tr { th { "#" } th { "Kind" } th { "Subject" } th { "State" } th { "Progress" } th { "Detail" } th { "Started" } } }
            tbody { @for j in jobs {
                tr data-job=(j.id) class=(j.state) {
                    td { (j.id) } td { (j.kind) } td { (j.subject) } td.state { (j.state) }
                    td { progress max=(j.total.max(1)) value=(j.done.min(j.total.max(1))) {} " " span.count { (j.done) " / " (j.total) } }
                    td.detail { (j.detail) } td { (when(j.created_ms)) }
                }
            } }
        }
    }
}

pub async fn jobs(State(st): State<AppState>, Viewer(s): Viewer) -> Response {
    let r: Result<Markup, ApiError> = async {
        let js = st.db.jobs(200).await?;
        Ok(html! { section #jobs data-live="jobs" { (jobs_table(&js)) } })
    }
    .await;
    done(&s, "Jobs", r)
}

pub async fn audit(State(st): State<AppState>, Viewer(s): Viewer) -> Response {
    if s.role < Role::Operator {
        let e = ApiError::forbidden(format!(
            "user {} is {}: reading the audit log needs the operator role",
            s.user, s.role
        ));
        return layout::error(Some(&s), &e);
    }
    let r: Result<Markup, ApiError> = async {
        let log = st.db.audit_log(500).await?;
        Ok(html! {
            table #audit data-live="audit" {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Subject" } th { "Detail" } th { "Result" } } }
                tbody { @for e in &log {
                    tr class=(if e.result == "ok" { "good" } else { "bad" }) {
                        td { (when(e.at_ms)) } td { (e.who) } td { (e.action) } td { (e.subject) } td { (e.detail) } td { (e.result) }
                    }
                } }
            }
        })
    }
    .await;
    done(&s, "Audit log", r)
}
