//! After a failover: protect the group again in the other direction.
//!
//! The original site of a group is the target named by the group's `origin` label
//! (`rewind-site group label G origin=TARGET`): explicit, set once by the operator (or by a
//! policy's label rule), and checked to be a registered target when used. After a planned
//! failover of a group with an origin, the site job goes on with:
//!
//! 1. commit on the recovery target (reverse replication protects committed live disks);
//! 2. adopt on the origin target: the old source disks (the paths `protect` wrote into the
//!    group's bundle) become the new group's base, so only blocks that differ are sent;
//! 3. a certificate for the reverse agent (`rewind-reverse-GROUP`) from the site CA, in
//!    `STATE/bundles/reverse-GROUP-MS/` (the target reads it there: the site and the target
//!    share that path, or it is copied to the same path on the target);
//! 4. `POST /v1/groups/{G}/reverse` on the recovery target, towards the origin's agent address.
//!
//! Without an origin (or after an unplanned failover, whose old source may be gone or
//! diverged) the job's detail and a `failover.advice` event say what to run.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::call::TargetConn;
use super::mirror;
use crate::db::now_ms;
use crate::server::AppState;

/// The label naming a group's original site's target.
pub const ORIGIN_LABEL: &str = "origin";

/// The name of the agent that replicates a group in reverse (the target's default too).
pub fn reverse_agent(group: &str) -> String {
    format!("rewind-reverse-{group}")
}

/// The `[[disk]]` entries (`NAME=PATH`) of the agent TOML in a protection's bundle.
pub fn bundle_disks(bundle: &Path) -> Result<Vec<String>, String> {
    let p = bundle.join("agent.toml");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let t: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    let disks = t
        .get("disk")
        .and_then(|d| d.as_array())
        .ok_or_else(|| format!("{}: no [[disk]] entries", p.display()))?;
    disks
        .iter()
        .map(|d| {
            let n = d.get("name").and_then(|v| v.as_str());
            let path = d.get("path").and_then(|v| v.as_str());
            match (n, path) {
                (Some(n), Some(p)) => Ok(format!("{n}={p}")),
                _ => Err(format!("{}: a [[disk]] without name and path", p.display())),
            }
        })
        .collect()
}

/// Issue the reverse agent's certificate into a new directory laid out as the agent's
/// `--tls-dir` takes it (`ca.crt`, `agents/NAME.crt`, `agents/NAME.key`).
fn reverse_tls(st: &AppState, group: &str) -> Result<PathBuf, String> {
    let dir = st
        .state
        .bundles()
        .join(format!("reverse-{group}-{}", now_ms()));
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents).map_err(|e| format!("creating {}: {e}", agents.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = reverse_agent(group);
    let ca = st.state.ca_dir();
    // An agent certificate of this name may exist from an earlier reverse: renew issues a new
    // one of the same name (it keeps owning what the old one owned).
    let days = rewind_mtd::tls::ca::DEFAULT_DAYS;
    let kind = rewind_mtd::tls::ca::Kind::Agent;
    if let Err(first) = rewind_mtd::tls::ca::issue(&ca, kind, &name, Some(&agents), days) {
        rewind_mtd::tls::ca::renew(&ca, &name, Some(&agents), days).map_err(|again| {
            format!("issuing the certificate of {name}: {first:#}; renewing it: {again:#}")
        })?;
    }
    std::fs::copy(st.state.ca_cert(), dir.join("ca.crt"))
        .map_err(|e| format!("copying ca.crt: {e}"))?;
    Ok(dir)
}

/// The rest of a planned failover's job (steps 2 to 4 of its four): reverse replication towards
/// the group's origin, or what the operator must do.
pub async fn after_planned(
    st: &AppState,
    job: i64,
    tc: &TargetConn,
    group: &str,
    links_dir: Option<String>,
) -> Result<String, String> {
    let here = tc.target.name.clone();
    let origin = st
        .db
        .group_label(group, ORIGIN_LABEL)
        .await
        .map_err(|e| e.message)?;
    let Some(origin) = origin else {
        let d = format!(
            "planned failover of {group} to target {here} done (not committed). No `{ORIGIN_LABEL}` \
             label: the site starts no reverse replication (label the group \
             {ORIGIN_LABEL}=TARGET for that); commit with POST /v1/groups/{group}/failover/commit"
        );
        let _ = st.db.event("failover.advice", group, &d).await;
        return Ok(d);
    };
    let fail = |why: String| {
        format!(
            "planned failover of {group} to target {here} done; reverse replication to \
             {ORIGIN_LABEL} target {origin} not started: {why}"
        )
    };
    if origin == here {
        return Err(fail(format!(
            "the group's {ORIGIN_LABEL} label names the target it failed over to"
        )));
    }
    let oc = TargetConn::open(st, &origin)
        .await
        .map_err(|e| fail(e.message))?;
    if oc.target.agent_addr.is_empty() {
        return Err(fail(format!(
            "target {origin} has no agent address (register it with --agents HOST:PORT)"
        )));
    }
    let bundle = st
        .db
        .protection_bundle(group)
        .await
        .map_err(|e| fail(e.message))?
        .ok_or_else(|| {
            fail(
                "the group was not protected through the site: its source disks are not known"
                    .into(),
            )
        })?;
    let disks = bundle_disks(Path::new(&bundle)).map_err(fail)?;
    let g = group.to_string();
    mirror::run_step(
        st,
        job,
        tc,
        &format!("/v1/groups/{g}/failover/commit"),
        &json!({}),
        100,
    )
    .await
    .map_err(fail)?;
    let agent = reverse_agent(group);
    mirror::run_step(
        st,
        job,
        &oc,
        &format!("/v1/groups/{g}/adopt"),
        &json!({ "disks": disks, "agent": agent }),
        200,
    )
    .await
    .map_err(fail)?;
    let (st2, g2) = (st.clone(), g.clone());
    let tls = tokio::task::spawn_blocking(move || reverse_tls(&st2, &g2))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
    let mut body = json!({
        "to": oc.target.agent_addr,
        "agent_name": agent,
        "tls_dir": tls,
    });
    if let Some(l) = links_dir {
        body["links_dir"] = json!(l);
    }
    let r = mirror::run_step(st, job, tc, &format!("/v1/groups/{g}/reverse"), &body, 300)
        .await
        .map_err(fail)?;
    let devices = r
        .devices
        .unwrap_or_default()
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let d = format!(
        "planned failover of {group} to target {here} committed; reverse replication to \
         {ORIGIN_LABEL} target {origin} ({}) started by agent {agent}; the workload writes \
         through {devices}",
        oc.target.agent_addr
    );
    let _ = st.db.event("group.reverse", group, &d).await;
    Ok(d)
}

/// After an unplanned failover: what to run to protect the group again (an event and the job's
/// detail). The old source may be gone or have diverged, so the site does not guess.
pub async fn advise_unplanned(
    st: &AppState,
    tc: &TargetConn,
    group: &str,
) -> Result<String, String> {
    let here = &tc.target.name;
    let origin = st
        .db
        .group_label(group, ORIGIN_LABEL)
        .await
        .map_err(|e| e.message)?;
    let to = match &origin {
        Some(o) => match st.db.target(o).await {
            Ok(t) if !t.agent_addr.is_empty() => format!("{} (target {o})", t.agent_addr),
            _ => format!("the agent address of target {o}"),
        },
        None => "the original site's agent address".to_string(),
    };
    let d = format!(
        "unplanned failover of {group} to target {here} done. To protect it again: check the \
         machines, then `rewind --site URL failover commit {group}`; once the original site is \
         back, adopt the old source disks there (`rewind adopt {group} --agent {agent} --disk \
         NAME=PATH` on its target) and start reverse replication from {here} \
         (`rewind reverse {group} --to {to} --tls-dir DIR` with a certificate for {agent} from \
         the site CA)",
        agent = reverse_agent(group)
    );
    let _ = st.db.event("failover.advice", group, &d).await;
    Ok(d)
}
