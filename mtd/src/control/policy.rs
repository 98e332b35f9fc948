//! `PUT /v1/groups/{group}/policy` and `GET` the same: a group's replication policy. The body is
//! checked whole here (unknown fields, every value: a 400 naming the field); the store keeps it
//! in the group's directory and applies its retention window; the agent feeding the group is
//! sent it at once (and every later session after WELCOME).
//!
//! Versions only move forward: a PUT of a lower version than the one the target runs, or of
//! the same version with other settings, is a 409; the same policy again is a no-op that sends
//! it to the agent again.

use axum::extract::State;
use axum::Json;
use rewind_formats::policy::Policy;

use super::error::ApiError;
use super::handler::{blocking, ApiResult, Ctl};
use super::names::GroupName;
use crate::api::policy::PolicyReply;
use crate::store::group::Group;

fn reply(g: &Group) -> Result<PolicyReply, ApiError> {
    let st = g.policy_status();
    let policy = g
        .policy()
        .ok_or_else(|| ApiError::NotFound(format!("group {} has no policy", g.name)))?;
    Ok(PolicyReply {
        group: g.name.clone(),
        policy,
        delivered_version: st.delivered,
        agent_refused: st.refused,
    })
}

pub async fn get_policy(State(c): Ctl, GroupName(group): GroupName) -> ApiResult<PolicyReply> {
    let g = c.exports.store.group(&group)?;
    reply(&g).map(Json)
}

pub async fn put_policy(
    State(c): Ctl,
    GroupName(group): GroupName,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<PolicyReply> {
    let policy: Policy =
        serde_json::from_value(body).map_err(|e| ApiError::BadRequest(format!("policy: {e}")))?;
    policy
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let store = c.exports.store.clone();
    let g = store.group(&group)?;
    let g2 = g.clone();
    let p = policy.clone();
    blocking(move || {
        if let Some(old) = g2.policy() {
            if old == p {
                return Ok(());
            }
            if old.name == p.name && p.version <= old.version {
                return Err(ApiError::Conflict(format!(
                    "group {} runs policy {} version {}: a change needs a higher version than \
                     that, not {}",
                    g2.name, old.name, old.version, p.version
                )));
            }
        }
        g2.set_policy(&p)?;
        Ok(())
    })
    .await?;
    store.events.emit(
        "policy.applied",
        Some(&group),
        serde_json::json!({ "policy": policy.name, "version": policy.version, "by": "target" }),
    );
    crate::server::policy::deliver(&store, &g).await;
    reply(&g).map(Json)
}
