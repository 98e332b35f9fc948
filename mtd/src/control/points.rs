//! `GET /v1/groups/{group}/points`: the recovery points of one group.

use axum::extract::State;
use axum::Json;
use rewind_formats::message::TagKind;

use super::handler::{blocking, ApiResult, Ctl};
use super::names::GroupName;
use crate::api::points::{LongTermPoint, PointsReport, TagReport};
use crate::store::points::format_ms;
use crate::views::inspect;

pub async fn points(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<PointsReport> {
    let r = blocking(move || {
        let drills = c.drills.status(&group);
        let group = c.exports.store.group(&group)?;
        let g = inspect::group_report(&group);
        let latest_app_consistent = g
            .tags
            .iter()
            .rev()
            .find(|t| t.kind == TagKind::AppConsistent)
            .map(|t| TagReport {
                name: t.name.clone(),
                seq: t.seq,
                kind: t.kind,
                time: t.time.clone(),
            });
        Ok(PointsReport {
            group: g.name,
            horizon_seq: g.horizon_seq,
            durable_seq: g.durable_seq,
            oldest: g.oldest_point,
            newest: g.newest_point,
            latest_app_consistent,
            tags: g
                .tags
                .into_iter()
                .filter(|t| !matches!(t.kind, TagKind::SyncBegin | TagKind::SyncEnd))
                .collect(),
            not_recoverable: g.not_recoverable,
            consistent: g.consistent,
            last_drill_failed: drills
                .last
                .as_ref()
                .filter(|d| !d.ok)
                .map(|d| format!("{} ({})", d.summary(), d.evidence.display())),
            verified: drills.verified,
            long_term: c
                .exports
                .store
                .ltr()
                .map(|l| l.points_of(&group.name))
                .unwrap_or_default()
                .into_iter()
                .map(|p| LongTermPoint {
                    disk: p.disk,
                    seq: p.seq,
                    time: format_ms(p.time_ms),
                    keep_until: format_ms(p.keep_until_ms),
                    app_consistent: p.app_consistent,
                    tags: p.tags,
                })
                .collect(),
        })
    })
    .await?;
    Ok(Json(r))
}
