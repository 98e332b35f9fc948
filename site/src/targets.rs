//! Talking to master targets: the site's client certificate over mutual TLS to each target's
//! control listener (`rewind-mtd serve --control-listen`), and reading what it reports.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::db::targets::{
    AgentBytes, Seen, SeenAgent, SeenDrill, SeenGroup, SeenReport, SeenVerify,
};
use crate::endpoint::Endpoint;
use crate::https::Https;
use crate::state::StateDir;

/// A client for the target at `url`, presenting the site's certificate.
pub fn client(state: &StateDir, url: &str, timeout: Duration) -> Result<Https> {
    let (cert, key) = state.site_cert();
    let tls = crate::tls::client_cert_config(&state.ca_cert(), &cert, &key)
        .context("the site's client certificate (made by `rewind-site init`)")?;
    let mut h = Https::new(Endpoint::parse(url)?, tls, None);
    h.timeout = timeout;
    Ok(h)
}

/// GET a JSON document; an error status is an error naming the target's message.
pub async fn get_json(h: &Https, path: &str) -> Result<Value> {
    let r = h.request("GET", path, None).await?;
    body(r, "GET", path)
}

pub fn body(r: crate::https::Reply, method: &str, path: &str) -> Result<Value> {
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if !(200..300).contains(&r.status) {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
        bail!("{method} {path}: {} {msg}", r.status);
    }
    Ok(v)
}

fn i(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// An agent report as the target relays it; None when it is absent or not an object.
fn agent_report(r: &Value) -> Option<SeenReport> {
    if !r.is_object() {
        return None;
    }
    let f = |k: &str| r.get(k).and_then(Value::as_f64);
    // A counter the report does not carry (an older agent), or one past i64, is unknown.
    let counter = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(-1);
    Some(SeenReport {
        mode: s(r, "mode"),
        rpo_ms: f("rpo_seconds").map_or(-1, |s| (s * 1000.0) as i64),
        at_ms: i(r, "at_ms"),
        sync_permille: f("sync_percent").map_or(-1, |p| (p * 10.0).round() as i64),
        bytes: AgentBytes {
            captured: counter("captured_bytes"),
            sent: counter("sent_bytes"),
            wire: counter("wire_bytes"),
        },
    })
}

/// A group's last online verify as the target reports it (`LastVerify`): what it found
/// differing counts only while not repaired.
fn verify(v: &Value) -> SeenVerify {
    let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let repaired = v.get("repaired").and_then(Value::as_bool).unwrap_or(false);
    SeenVerify {
        job: n("job"),
        ended_ms: n("ended_ms"),
        differs_bytes: if repaired { 0 } else { n("mismatched_bytes") },
        ranges: n("ranges"),
    }
}

/// A group's last drill as the target reports it (`DrillBrief`).
fn drill(d: &Value) -> SeenDrill {
    let opt = |k: &str, none: i64| d.get(k).and_then(Value::as_i64).unwrap_or(none);
    SeenDrill {
        last_ok: match d.get("last_ok").and_then(Value::as_bool) {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        },
        last_ms: opt("last_ms", 0),
        ok_ms: opt("verified_ms", 0),
        verified_seq: opt("verified_seq", -1),
        every_secs: opt("every_secs", 0),
        summary: s(d, "last_summary"),
    }
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// What one poll learns: `GET /v1/groups` (the inspect report), read leniently so a target a
/// version older or newer than the site still reports what both know.
pub async fn poll(h: &Https) -> Result<Seen> {
    let report = get_json(h, "/v1/groups").await?;
    let groups = report
        .get("groups")
        .and_then(Value::as_array)
        .context("GET /v1/groups: no groups in the reply")?;
    let mut seen = Seen {
        version: s(&report, "version"),
        free_bytes: report
            .get("space")
            .and_then(|s| s.get("free_bytes"))
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        capacity_bytes: report
            .get("space")
            .and_then(|s| s.get("capacity_bytes"))
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        groups: Vec::new(),
        agents: Vec::new(),
    };
    for g in groups {
        let name = s(g, "name");
        let policy = g.get("policy").cloned().unwrap_or(Value::Null);
        let agent = g.get("agent").filter(|a| a.is_object());
        seen.groups.push(SeenGroup {
            state: if g.get("consistent").and_then(Value::as_bool) == Some(false) {
                "syncing".into()
            } else {
                "ok".into()
            },
            generation: i(g, "generation"),
            durable_seq: i(g, "durable_seq"),
            journal_bytes: i(g, "journal_bytes"),
            retention: s(g, "retention"),
            running_policy: s(&policy, "name"),
            running_version: i(&policy, "version"),
            disks: g
                .get("disks")
                .and_then(Value::as_array)
                .map(|ds| {
                    ds.iter()
                        .map(|d| (s(d, "name"), i(d, "size_bytes")))
                        .collect()
                })
                .unwrap_or_default(),
            agent_connected: match agent
                .and_then(|a| a.get("connected"))
                .and_then(Value::as_bool)
            {
                Some(true) => 1,
                Some(false) => 0,
                None => -1,
            },
            agent_seen_ms: agent.map_or(0, |a| i(a, "last_seen_ms")),
            report: agent.and_then(|a| a.get("report")).and_then(agent_report),
            drill: g.get("drill").filter(|d| d.is_object()).map(drill),
            verify: g.get("verify").filter(|v| v.is_object()).map(verify),
            name: name.clone(),
        });
        if let Some(a) = agent {
            seen.agents.push(SeenAgent {
                name: s(a, "agent"),
                group: name.clone(),
                version: s(a, "version"),
                host: s(a, "host"),
            });
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verify_differs_only_until_repaired() {
        let found = serde_json::json!({"job": 7, "ended_ms": 5, "compared_bytes": 1,
            "mismatched_bytes": 8192, "ranges": 2, "repaired": false});
        let v = verify(&found);
        assert_eq!(
            (v.job, v.ended_ms, v.differs_bytes, v.ranges),
            (7, 5, 8192, 2)
        );
        let mut repaired = found.clone();
        repaired["repaired"] = true.into();
        assert_eq!(verify(&repaired).differs_bytes, 0);
    }
}
