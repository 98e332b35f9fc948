//! Groups: the inventory with state, policy and version; labels.

use axum::extract::{Path, State};
use axum::Json;

use super::auth::Caller;
use super::AppState;
use crate::api::{Done, GroupView, LabelRequest};
use crate::error::ApiError;
use crate::names;
use crate::roles::Role;

pub async fn list(st: State<AppState>, c: Caller) -> Result<Json<Vec<GroupView>>, ApiError> {
    c.may_read(Role::Viewer, "groups")?;
    Ok(Json(st.db.group_views().await?))
}

/// A group the site knows, or 404 naming it.
pub async fn known(st: &AppState, group: &str) -> Result<(), ApiError> {
    names::check("group name", group)?;
    if !st.db.group_known(group).await? {
        return Err(ApiError::not_found(format!(
            "no group {group} on any target (see `rewind-site groups`)"
        )));
    }
    Ok(())
}

pub async fn label(
    st: State<AppState>,
    c: Caller,
    Path(group): Path<String>,
    Json(req): Json<LabelRequest>,
) -> Result<Json<Done>, ApiError> {
    let detail = format!("{}={}", req.key, req.value);
    c.audited(&st, Role::Operator, "group.label", &group, &detail, async {
        known(&st, &group).await?;
        names::check("label key", &req.key)?;
        names::check("label value", &req.value)?;
        st.db.set_label(&group, &req.key, &req.value).await?;
        Ok(Json(Done {
            done: format!("group {group} labelled {detail}"),
        }))
    })
    .await
}

pub async fn unlabel(
    st: State<AppState>,
    c: Caller,
    Path((group, key)): Path<(String, String)>,
) -> Result<Json<Done>, ApiError> {
    c.audited(&st, Role::Operator, "group.unlabel", &group, &key, async {
        known(&st, &group).await?;
        names::check("label key", &key)?;
        st.db.remove_label(&group, &key).await?;
        Ok(Json(Done {
            done: format!("label {key} removed from group {group}"),
        }))
    })
    .await
}
