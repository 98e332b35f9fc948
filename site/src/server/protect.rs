//! `POST /v1/protect`: place a host's group on a master target, issue its certificate, write
//! its settings bundle and record the protection (its policy assigned to the group).

use axum::extract::State;
use axum::Json;

use super::auth::Caller;
use super::AppState;
use crate::api::{ProtectReply, ProtectRequest, Protection};
use crate::bundle::{self, BundleSpec};
use crate::db::targets::Target;
use crate::error::ApiError;
use crate::names;
use crate::roles::Role;

pub async fn list(st: State<AppState>, c: Caller) -> Result<Json<Vec<Protection>>, ApiError> {
    c.may_read(Role::Viewer, "protections")?;
    Ok(Json(st.db.protections().await?))
}

/// The target for a new group: the one asked for (which must be up), else the up target with
/// the most free journal space (the least journal used when targets do not report free space).
pub fn place(targets: &[Target], asked: Option<&str>) -> Result<Target, ApiError> {
    if let Some(name) = asked {
        let t = targets.iter().find(|t| t.name == name).ok_or_else(|| {
            ApiError::not_found(format!("no target {name} (see `rewind-site target list`)"))
        })?;
        if t.state != "up" {
            return Err(ApiError::conflict(format!(
                "target {name} is {} ({}): pick another or wait",
                t.state, t.reason
            )));
        }
        return Ok(t.clone());
    }
    targets
        .iter()
        .filter(|t| t.state == "up")
        .max_by_key(|t| {
            (
                t.free_bytes,
                -t.journal_bytes,
                std::cmp::Reverse(t.name.clone()),
            )
        })
        .cloned()
        .ok_or_else(|| ApiError::conflict("no master target is up: nothing to place the group on"))
}

pub async fn protect(
    st: State<AppState>,
    c: Caller,
    Json(req): Json<ProtectRequest>,
) -> Result<Json<ProtectReply>, ApiError> {
    let detail = format!(
        "group={} policy={} disks={} target={}",
        req.group,
        req.policy,
        req.disks
            .iter()
            .map(|(n, p)| format!("{n}={p}"))
            .collect::<Vec<_>>()
            .join(","),
        req.target.as_deref().unwrap_or("(pick)")
    );
    c.audited(&st, Role::Operator, "protect", &req.host, &detail, async {
        names::check("host", &req.host)?;
        names::check("group name", &req.group)?;
        names::check("policy name", &req.policy)?;
        if req.disks.is_empty() {
            return Err(ApiError::bad_request("give at least one --disk NAME=PATH"));
        }
        for (n, p) in &req.disks {
            names::check("disk name", n)?;
            if !p.starts_with('/') || p.contains('\0') {
                return Err(ApiError::bad_request(format!(
                    "disk {n}: path {p:?} is not absolute"
                )));
            }
        }
        if st.db.group_known(&req.group).await? {
            return Err(ApiError::conflict(format!(
                "group {} exists already (see `rewind-site groups`)",
                req.group
            )));
        }
        let policy = st.db.policy(&req.policy).await?;
        let target = place(&st.db.targets().await?, req.target.as_deref())?;
        if target.agent_addr.is_empty() {
            return Err(ApiError::conflict(format!(
                "target {} has no agent address: register it again with --agents HOST:PORT",
                target.name
            )));
        }
        let dir = match &req.out {
            Some(o) => std::path::PathBuf::from(o),
            None => st
                .state
                .bundles()
                .join(format!("{}-{}", req.host, req.group)),
        };
        let state = st.state.clone();
        let (host, group, disks, addr, pol, d) = (
            req.host.clone(),
            req.group.clone(),
            req.disks.clone(),
            target.agent_addr.clone(),
            policy.clone(),
            dir.clone(),
        );
        let config = tokio::task::spawn_blocking(move || {
            bundle::write(
                &state,
                &BundleSpec {
                    host: &host,
                    group: &group,
                    disks: &disks,
                    target_addr: &addr,
                    policy: &pol,
                    dir: &d,
                },
            )
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        st.db
            .add_protection(&Protection {
                host: req.host.clone(),
                group: req.group.clone(),
                target: target.name.clone(),
                policy: policy.name.clone(),
                bundle: dir.display().to_string(),
                created_ms: 0,
            })
            .await?;
        st.db
            .assign(&policy.name, &format!("group:{}", req.group))
            .await?;
        st.db
            .event(
                "group.protected",
                &req.group,
                &format!("host {} on target {}", req.host, target.name),
            )
            .await?;
        Ok(Json(ProtectReply {
            target: target.name,
            bundle: dir.display().to_string(),
            config: config.display().to_string(),
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, state: &str, free: i64, used: i64) -> Target {
        Target {
            name: name.into(),
            url: String::new(),
            agent_addr: "127.0.0.1:1".into(),
            state: state.into(),
            reason: String::new(),
            version: String::new(),
            journal_bytes: used,
            free_bytes: free,
            capacity_bytes: -1,
            last_seen_ms: 0,
            added_ms: 0,
        }
    }

    #[test]
    fn placement_prefers_free_space_among_targets_up() {
        let ts = vec![
            t("a", "up", 10, 0),
            t("b", "up", 30, 0),
            t("c", "down", 99, 0),
        ];
        assert_eq!(place(&ts, None).unwrap().name, "b");
        assert_eq!(place(&ts, Some("a")).unwrap().name, "a");
        assert_eq!(place(&ts, Some("c")).unwrap_err().status, 409);
        assert_eq!(place(&ts, Some("x")).unwrap_err().status, 404);
        let unreported = vec![t("a", "up", -1, 500), t("b", "up", -1, 100)];
        assert_eq!(place(&unreported, None).unwrap().name, "b");
        assert_eq!(
            place(&[t("a", "down", 1, 0)], None).unwrap_err().status,
            409
        );
    }
}
