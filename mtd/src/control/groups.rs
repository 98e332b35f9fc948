//! `GET /v1/groups` (the `inspect` report), `POST /v1/groups/{group}/retention`, and
//! `DELETE /v1/groups/{group}`: delete a group and everything the target holds of it.
//!
//! A delete is refused, changing nothing, while anything uses the group: an agent session, an overlay, a loop
//! device or mount, a failover state (test disks, a promotion, reverse replication, a boot
//! command), an open view (an NBD connection, a FUSE file). The answer says which.

use axum::extract::{Path as UrlPath, State};
use axum::Json;

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::names::GroupName;
use crate::api::groups::{Report, RetentionReply, RetentionRequest};
use crate::api::Deleted;
use crate::store::DeleteError;
use crate::views::inspect;

pub async fn groups(State(c): Ctl) -> ApiResult<Report> {
    Ok(Json(
        blocking(move || {
            let mut r = inspect::report(&c.exports.store);
            for g in &mut r.groups {
                let d = c.drills.status(&g.name);
                if d.last.is_some() || d.verified.is_some() {
                    let every = g
                        .policy
                        .as_ref()
                        .map_or(0, |_| super::drill::show_of(&c, &g.name).every_secs);
                    g.drill = Some(crate::api::drill::DrillBrief::of(&d, every));
                }
                g.verify = crate::verify::last::get(&g.name);
            }
            Ok(r)
        })
        .await?,
    ))
}

pub async fn retention(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(req): Json<RetentionRequest>,
) -> ApiResult<RetentionReply> {
    let d = crate::limits::parse_retention(&req.retention).map_err(ApiError::BadRequest)?;
    blocking(move || {
        let g = c.exports.store.group(&group)?;
        // Cannot truncate: parse_retention caps it far below u64::MAX ms. On a full disk the
        // manifest is written on the space reserve: shortening the retention is how an
        // operator lets the merger free space, so it must work when nothing else does.
        let store = &c.exports.store;
        store
            .reserve
            .spend_on_shortage(|| g.set_retention(d.as_millis() as u64))?;
        Ok(RetentionReply {
            group,
            retention: humantime::format_duration(d).to_string(),
        })
    })
    .await
    .map(Json)
}

pub async fn delete_group(State(c): Ctl, UrlPath(group): UrlPath<String>) -> ApiResult<Deleted> {
    blocking(move || {
        // The name reaches a path below: validate it before anything else.
        rewind_formats::validate_name(&group)
            .map_err(|e| ApiError::BadRequest(format!("group name: {e}")))?;
        let busy = |by: String| ApiError::Conflict(format!("group {group} is in use: {by}"));
        let overlays: Vec<String> = c
            .exports
            .overlays
            .list()
            .into_iter()
            .filter(|o| o.meta.group == group)
            .map(|o| o.meta.name)
            .collect();
        if !overlays.is_empty() {
            return Err(busy(format!(
                "overlay(s) {}; `rewind overlay delete` them first",
                overlays.join(", ")
            )));
        }
        let prefix = format!("{group}/");
        let attached: Vec<String> = c
            .attachments
            .list()
            .into_iter()
            .filter(|a| a.export.starts_with(&prefix))
            .map(|a| format!("{} ({})", a.device, a.export))
            .collect();
        if !attached.is_empty() {
            return Err(busy(format!(
                "attached to {}; `rewind detach` or `rewind umount` first",
                attached.join(", ")
            )));
        }
        if !c.failovers.get(&group).is_empty() {
            return Err(busy(
                "it has a failover state (test disks, a promotion, reverse replication, a \
                 boot command or a drill configuration): see `rewind failover status`, clean it \
                 up first"
                    .into(),
            ));
        }
        match c.exports.store.delete_group(&group) {
            Ok(()) => {
                c.drills.evidence.forget(&group);
                crate::verify::last::forget(&group);
                Ok(Deleted { deleted: group })
            }
            Err(DeleteError::InUse { by, .. }) => Err(busy(by)),
            Err(DeleteError::Store(e)) => Err(e.into()),
        }
    })
    .await
    .map(Json)
}
