//! `DELETE /v1/groups/{group}`: delete a group and everything the target holds of it.
//!
//! Refused, changing nothing, while anything uses the group: an agent session, an overlay, a loop
//! device or mount, a failover state (test disks, a promotion, reverse replication, a boot
//! command), an open view (an NBD connection, a FUSE file). The answer says which.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::routes::{blocking, ApiError, ApiResult, Ctl};
use crate::store::DeleteError;

pub async fn delete_group(State(c): Ctl, UrlPath(group): UrlPath<String>) -> ApiResult<Value> {
    blocking(move || {
        // The name reaches a path below: validate it before anything else.
        rewind_formats::validate_name(&group)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("group name: {e}")))?;
        let busy = |by: String| {
            ApiError(
                StatusCode::CONFLICT,
                format!("group {group} is in use: {by}"),
            )
        };
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
                "it has a failover state (test disks, a promotion, reverse replication or a \
                 boot command): see `rewind failover status`, clean it up first"
                    .into(),
            ));
        }
        match c.exports.store.delete_group(&group) {
            Ok(()) => Ok(json!({ "deleted": group })),
            Err(DeleteError::InUse { by, .. }) => Err(busy(by)),
            Err(DeleteError::Store(e)) => Err(e.into()),
        }
    })
    .await
    .map(Json)
}
