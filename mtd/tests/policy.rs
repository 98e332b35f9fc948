//! A group's replication policy on the target (`PUT|GET /v1/groups/{group}/policy`): checked at
//! the edge (a 400 naming the field, nothing changed), versions only forward, kept across a
//! restart, its retention window the group's, and sent to the agent as CONTROL Policy after
//! WELCOME and on every change; an agent that cannot apply it says so and keeps its session.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::tls_agent::*;
use common::*;
use rewind_formats::message::*;
use rewind_formats::policy::{Policy, REFUSED_PREFIX};

fn mtd() -> std::process::Command {
    std::process::Command::new(bin("rewind-mtd"))
}

fn policy(version: u64, retention_secs: u64, level: i32) -> Policy {
    Policy {
        name: "gold".into(),
        version,
        rpo_target_secs: 60,
        retention_secs,
        app_consistent_every_secs: 0,
        freeze: vec![],
        pre_hook: None,
        post_hook: None,
        level,
        bandwidth: "mon-fri 08:00-18:00=20MiB/s, *=unlimited".parse().unwrap(),
        spool_mib: 256,
        initial_sync_window: Default::default(),
        drill_every_secs: 0,
        ltr_hourly_days: 0,
        ltr_daily_weeks: 0,
        ltr_monthly_months: 0,
    }
}

fn agent(ca: &Path) -> Arc<rustls::ClientConfig> {
    rewind_mtd::tls::client_config(
        &ca.join("ca.crt"),
        &ca.join("agents/web01.crt"),
        &ca.join("agents/web01.key"),
    )
    .unwrap()
}

/// The next CONTROL Policy frame on the session (skipping ACKs).
fn next_policy(s: &mut Tls) -> Policy {
    loop {
        match recv(s) {
            Some(Message::Control(c)) if c.op == ControlOp::Policy => {
                assert_eq!(c.group, "g1");
                return Policy::from_control_arg(&c.arg).expect("a valid policy");
            }
            Some(_) => continue,
            None => panic!("session closed before the policy came"),
        }
    }
}

fn group_line(d: &Mtd) -> serde_json::Value {
    let (code, body) = d.control_get("/v1/groups");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "g1")
        .cloned()
        .expect("g1")
}

#[test]
fn policies_are_checked_kept_applied_and_sent_to_the_agent() {
    let work = tempdir();
    let ca = work.path().join("ca");
    run_ok(mtd().args(["ca", "init", "--dir"]).arg(&ca));
    run_ok(
        mtd()
            .args(["ca", "issue", "--agent", "web01", "--dir"])
            .arg(&ca),
    );
    let mut d = Mtd::start_tls(work.path(), &ca);
    let addr = d.tcp.clone().unwrap();
    let mut s = connect(&addr, agent(&ca)).unwrap();
    send(&mut s, &hello("web01", "g1")).unwrap();
    assert!(matches!(recv(&mut s), Some(Message::Welcome(_))));
    let path = "/v1/groups/g1/policy";
    let (code, _) = d.control_get(path);
    assert_eq!(code, 404, "no policy yet");

    // Bad input: a 400 that names the field, and nothing changes.
    let mut bad = serde_json::to_value(policy(1, 3600, 3)).unwrap();
    bad["level"] = 42.into();
    let (code, body) = d.control_put(path, &bad.to_string());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("level"), "{body}");
    let mut bad = serde_json::to_value(policy(1, 3600, 3)).unwrap();
    bad["bandwidth"] = "someday=fast".into();
    let (code, body) = d.control_put(path, &bad.to_string());
    assert_eq!(code, 400, "{body}");
    let mut bad = serde_json::to_value(policy(1, 3600, 3)).unwrap();
    bad["colour"] = "blue".into();
    let (code, body) = d.control_put(path, &bad.to_string());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("colour"), "{body}");
    let (code, _) = d.control_put(
        "/v1/groups/nosuch/policy",
        &serde_json::to_string(&policy(1, 3600, 3)).unwrap(),
    );
    assert_eq!(code, 404);
    assert_eq!(
        d.control_get(path).0,
        404,
        "a refused PUT changed something"
    );

    // Set: retention is the policy's, the agent is sent it at once.
    let p1 = policy(1, 7200, 3);
    let (code, body) = d.control_put(path, &serde_json::to_string(&p1).unwrap());
    assert_eq!(code, 200, "{body}");
    assert_eq!(next_policy(&mut s), p1);
    let g = group_line(&d);
    assert_eq!(g["retention"], "2h");
    assert_eq!(g["policy"]["name"], "gold");
    assert_eq!(g["policy"]["version"], 1);
    assert_eq!(g["policy"]["delivered_version"], 1);
    // The inventory the site places groups with: the agent and the journal's space.
    assert_eq!(g["agent"]["agent"], "web01");
    assert_eq!(g["agent"]["connected"], true);
    assert!(
        g["agent"]["host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{g}"
    );
    let (_, body) = d.control_get("/v1/groups");
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let space = &all["space"];
    assert!(space["capacity_bytes"].as_u64().unwrap() > 0, "{all}");
    assert!(space["free_bytes"].as_u64().unwrap() <= space["capacity_bytes"].as_u64().unwrap());
    assert!(space["journal_bytes"].is_u64());
    // `rewind groups` shows it.
    let table = d.rewind(&["groups"]);
    assert!(table.contains("gold v1 (agent: v1)"), "{table}");

    // Versions only move forward.
    let (code, body) = d.control_put(path, &serde_json::to_string(&policy(1, 60, 3)).unwrap());
    assert_eq!(code, 409, "{body}");
    let p2 = policy(2, 1800, 9);
    let (code, body) = d.control_put(path, &serde_json::to_string(&p2).unwrap());
    assert_eq!(code, 200, "{body}");
    assert_eq!(next_policy(&mut s), p2);
    assert_eq!(group_line(&d)["retention"], "30m");

    // An agent that cannot apply it says why; its session goes on.
    send(
        &mut s,
        &Message::Error(ErrorMsg {
            code: ErrorCode::OutOfRange,
            message: format!("{REFUSED_PREFIX}g1: policy field spool_mib: cannot grow the spool"),
        }),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let g = group_line(&d);
        if g["policy"]["agent_refused"].is_string() {
            assert!(g["policy"]["agent_refused"]
                .as_str()
                .unwrap()
                .contains("spool_mib"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusal not recorded: {g}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, _) = d.control_put(path, &serde_json::to_string(&p2).unwrap());
    assert_eq!(code, 200, "the same policy again is fine");
    assert_eq!(next_policy(&mut s), p2, "the session survived the refusal");
    drop(s);
    // Gone, and when it was last seen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while group_line(&d)["agent"]["connected"] != false {
        assert!(std::time::Instant::now() < deadline, "{}", group_line(&d));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let g = group_line(&d);
    assert_eq!(g["agent"]["agent"], "web01");
    assert!(g["agent"]["last_seen_ms"].as_u64().unwrap() > 0);

    // Kept across a restart, and sent again after WELCOME.
    d.stop();
    d.restart();
    let addr = d.tcp.clone().unwrap();
    let (code, body) = d.control_get(path);
    assert_eq!(code, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["policy"]["version"], 2);
    assert!(
        r["delivered_version"].is_null(),
        "nothing sent since the restart"
    );
    let mut s = connect(&addr, agent(&ca)).unwrap();
    send(&mut s, &hello("web01", "g1")).unwrap();
    assert!(matches!(recv(&mut s), Some(Message::Welcome(_))));
    assert_eq!(next_policy(&mut s), p2);
    assert_eq!(group_line(&d)["retention"], "30m");
}
