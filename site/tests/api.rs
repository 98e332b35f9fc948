//! The site's API on both backends (SQLite, and a PostgreSQL cluster the test starts): users,
//! roles, tokens, certificates, the audit log, and bad input refused with nothing changed.

mod common;

use common::api::call;
use common::site::{init, scratch, Backend, Site};
use serde_json::json;

fn count(v: &serde_json::Value) -> usize {
    v.as_array().expect("array").len()
}

fn users_roles_audit_and_bad_input(backend: &Backend) {
    let work = scratch();
    let state = work.path().join("state");
    let db = backend.url(&state);
    init(&state, &db);
    let site = Site::start(&state, &db, 0);
    site.wait_leader(std::time::Duration::from_secs(10));
    let status = site.json(&["status"]);
    assert_eq!(status["backend"], backend.name());
    assert_eq!(status["caller"], "cert admin");
    assert_eq!(status["leader"], true);
    assert_eq!(
        status["schema_versions"],
        serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8])
    );

    // A viewer with a password; an operator token.
    let pw = work.path().join("pw");
    std::fs::write(&pw, "correct horse battery\n").unwrap();
    site.ok(&[
        "user",
        "add",
        "vera",
        "--role",
        "viewer",
        "--password-from",
        pw.to_str().unwrap(),
    ]);
    let token = site
        .ok(&["token", "add", "ci", "--role", "operator"])
        .trim()
        .to_string();
    assert!(token.starts_with("rwst_"), "{token}");
    let tokens = site.json(&["token", "list"]);
    assert!(
        !tokens.to_string().contains(&token),
        "a token is stored hashed, never shown again"
    );
    let as_vera = ["--user", "vera", "--password-file", pw.to_str().unwrap()];
    let as_ci = [("REWIND_SITE_TOKEN", token.as_str())];

    // The operator token creates a policy; the viewer reads it but cannot change it.
    let out = site.cli_env(
        &[
            "policy",
            "create",
            "gold",
            "--rpo",
            "15m",
            "--retention",
            "24h",
            "--bandwidth",
            "mon-fri 08:00-18:00=20MiB/s, *=unlimited",
        ],
        &as_ci,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = site.cli(&[&as_vera[..], &["--json", "policy", "show", "gold"]].concat());
    assert!(v.status.success());
    let before: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(before["version"], 1);
    let e = site.fails(
        &[
            &as_vera[..],
            &["policy", "update", "gold", "--retention", "48h"],
        ]
        .concat(),
    );
    assert!(
        e.contains("user vera is viewer: policy.update needs the operator role")
            && e.contains("HTTP 403"),
        "{e}"
    );
    let e = site.fails(&[&as_vera[..], &["user", "add", "mallory", "--role", "admin"]].concat());
    assert!(e.contains("HTTP 403"), "{e}");
    let e = site.fails(&[&as_vera[..], &["audit"]].concat());
    assert!(e.contains("HTTP 403"), "{e}");
    // Operator token: not an admin.
    let out = site.cli_env(
        &["target", "add", "t1", "--url", "https://127.0.0.1:9"],
        &as_ci,
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("token ci is operator: target.add needs the admin role"));
    // Wrong password, unknown token: 401.
    std::fs::write(work.path().join("bad"), "not the password").unwrap();
    let e = site.fails(&[
        "--user",
        "vera",
        "--password-file",
        work.path().join("bad").to_str().unwrap(),
        "groups",
    ]);
    assert!(
        e.contains("wrong name or password") && e.contains("HTTP 401"),
        "{e}"
    );
    let out = site.cli_env(&["groups"], &[("REWIND_SITE_TOKEN", "rwst_0000")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let after = site.json(&["policy", "show", "gold"]);
    assert_eq!(before, after, "a refused update changed the policy");
    assert_eq!(count(&site.json(&["user", "list"])), 2, "mallory was added");
    assert_eq!(
        count(&site.json(&["target", "list"])),
        0,
        "a target was added"
    );

    client_jobs(&site, &token);

    // Bad input: a clear error naming what and where, and nothing changed.
    for (args, want) in [
        (
            vec![
                "policy",
                "create",
                "p2",
                "--rpo",
                "15m",
                "--retention",
                "24h",
                "--bandwidth",
                "mon-fri=20 furlongs",
            ],
            "policy field bandwidth",
        ),
        (
            vec![
                "policy",
                "create",
                "p2",
                "--rpo",
                "15m",
                "--retention",
                "forever",
            ],
            "policy field retention",
        ),
        (
            vec![
                "policy",
                "create",
                "p2",
                "--rpo",
                "15m",
                "--retention",
                "1h",
                "--level",
                "40",
            ],
            "policy field level",
        ),
        (
            vec!["policy", "create", "p2", "--retention", "1h"],
            "policy field rpo",
        ),
        (
            vec![
                "policy",
                "create",
                "../p",
                "--rpo",
                "1m",
                "--retention",
                "1h",
            ],
            "policy field name",
        ),
        (
            vec![
                "policy",
                "create",
                "gold",
                "--rpo",
                "1m",
                "--retention",
                "1h",
            ],
            "policy gold exists",
        ),
        (
            vec![
                "policy",
                "update",
                "gold",
                "--initial-sync-window",
                "sun 25:00-26:00=0",
            ],
            "policy field initial_sync_window",
        ),
        (
            vec!["policy", "update", "nosuch", "--rpo", "1m"],
            "no policy nosuch",
        ),
        (
            vec!["policy", "assign", "gold", "--group", "nosuch"],
            "no group nosuch",
        ),
        (
            vec!["policy", "assign", "nosuch", "--label", "tier=gold"],
            "no policy nosuch",
        ),
        (
            vec!["policy", "assign", "gold", "--label", "tier"],
            "label \"tier\": give KEY=VALUE",
        ),
        (
            vec!["group", "label", "nosuch", "tier=gold"],
            "no group nosuch",
        ),
        (
            vec!["user", "add", "vera", "--role", "admin"],
            "user vera exists",
        ),
        (
            vec!["user", "add", "a/b", "--role", "admin"],
            "user name \"a/b\"",
        ),
        (
            vec!["token", "add", "ci", "--role", "viewer"],
            "token ci exists",
        ),
        (
            vec!["target", "add", "t1", "--url", "http://127.0.0.1:9"],
            "give https://HOST:PORT",
        ),
        (
            vec!["target", "add", "t1", "--url", "https://127.0.0.1"],
            "give the port",
        ),
        (
            vec!["target", "add", "t/1", "--url", "https://127.0.0.1:9"],
            "target name \"t/1\"",
        ),
        (vec!["target", "remove", "nosuch"], "no target nosuch"),
        (
            vec![
                "protect", "h1", "--group", "g1", "--disk", "d=/dev/x", "--policy", "nosuch",
            ],
            "no policy nosuch",
        ),
        (
            vec![
                "protect", "h1", "--group", "g1", "--disk", "d=/dev/x", "--policy", "gold",
            ],
            "no master target is up",
        ),
        (
            vec![
                "protect", "h1", "--group", "g1", "--disk", "d=/dev/x", "--policy", "gold",
                "--target", "nosuch",
            ],
            "no target nosuch",
        ),
    ] {
        let e = site.fails(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(site.json(&["policy", "show", "gold"]), before);
    assert_eq!(count(&site.json(&["policy", "list"])), 1);
    assert_eq!(count(&site.json(&["target", "list"])), 0);
    assert_eq!(count(&site.json(&["groups"])), 0);

    // A duplicate target name, then an update that bumps the version.
    site.ok(&[
        "target",
        "add",
        "t1",
        "--url",
        "https://127.0.0.1:9",
        "--agents",
        "127.0.0.1:10",
    ]);
    let e = site.fails(&["target", "add", "t1", "--url", "https://127.0.0.1:11"]);
    assert!(
        e.contains("target t1 is already registered") && e.contains("409"),
        "{e}"
    );
    let p = site.json(&["policy", "update", "gold", "--retention", "48h"]);
    assert_eq!(
        (p["version"].as_i64(), p["retention_secs"].as_i64()),
        (Some(2), Some(172_800))
    );

    // The audit log: who, what, result; denials included.
    let audit = site.json(&["audit", "--limit", "1000"]);
    let rows = audit.as_array().unwrap();
    let has = |who: &str, action: &str, result: &str| {
        rows.iter().any(|r| {
            r["who"] == who
                && r["action"] == action
                && r["result"].as_str().unwrap().starts_with(result)
        })
    };
    assert!(has("cert admin", "user.add", "ok"));
    assert!(has("token ci", "policy.create", "ok"));
    assert!(has(
        "user vera",
        "policy.update",
        "denied: user vera is viewer"
    ));
    assert!(has("token ci", "target.add", "denied"));
    assert!(has(
        "cert admin",
        "policy.create",
        "error: policy field bandwidth"
    ));
    assert!(has("unauthenticated", "login", "denied"));
    assert!(has("cert admin", "policy.update", "ok"));
    assert!(
        rows.iter()
            .all(|r| !r.to_string().contains("correct horse")),
        "a password reached the audit log"
    );
    let text = site.ok(&["audit"]);
    assert!(text.contains("denied: user vera is viewer"), "{text}");
}

#[test]
fn users_roles_audit_and_bad_input_on_both_backends() {
    for b in Backend::all() {
        eprintln!("backend {}", b.name());
        users_roles_audit_and_bad_input(&b);
    }
}

/// Jobs a client reports (`push-install`'s): started by an operator, stepped only by that
/// caller up to its total, validated at the edge; a viewer can do neither.
fn client_jobs(site: &Site, operator: &str) {
    let viewer = site
        .ok(&["token", "add", "eyes", "--role", "viewer"])
        .trim()
        .to_string();
    let other = site
        .ok(&["token", "add", "ci2", "--role", "operator"])
        .trim()
        .to_string();
    let start =
        |token: &str, body: serde_json::Value| call(site, token, "POST", "/v1/jobs", Some(body));
    let job = json!({"kind": "push-install", "subject": "web01", "total": 7});
    let (s, j) = start(&viewer, job.clone());
    assert_eq!(s, 403, "{j}");
    for (bad, want) in [
        (
            json!({"kind": "failover", "subject": "web01", "total": 7}),
            "a client may report only push-install",
        ),
        (
            json!({"kind": "push-install", "subject": "a/b", "total": 7}),
            "job subject \"a/b\"",
        ),
        (
            json!({"kind": "push-install", "subject": "web01", "total": 0}),
            "give 1 to 1000 steps",
        ),
    ] {
        let (s, e) = start(operator, bad);
        assert_eq!(s, 400, "{e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{e}");
    }
    let (s, j) = start(operator, job);
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        (j["state"].as_str(), j["owner"].as_str()),
        (Some("running"), Some("client:token ci"))
    );
    let id = j["id"].as_i64().unwrap();
    let step = |token: &str, body: serde_json::Value| {
        call(
            site,
            token,
            "POST",
            &format!("/v1/jobs/{id}/progress"),
            Some(body),
        )
    };
    let (s, j) = step(
        operator,
        json!({"done": 2, "state": "running", "detail": "protect: ok"}),
    );
    assert_eq!((s, j["done"].as_i64()), (200, Some(2)), "{j}");
    for (token, body, code) in [
        (
            &viewer,
            json!({"done": 3, "state": "running", "detail": "x"}),
            403,
        ),
        (
            &other,
            json!({"done": 3, "state": "running", "detail": "x"}),
            409,
        ),
        (
            &operator.to_string(),
            json!({"done": 8, "state": "running", "detail": "x"}),
            409,
        ),
        (
            &operator.to_string(),
            json!({"done": 3, "state": "paused", "detail": "x"}),
            400,
        ),
        (
            &operator.to_string(),
            json!({"done": 3, "state": "running", "detail": "a\nb"}),
            400,
        ),
    ] {
        let (s, e) = step(token, body.clone());
        assert_eq!(s, code, "{body}: {e}");
    }
    let (s, j) = step(
        operator,
        json!({"done": 7, "state": "done", "detail": "welcome: ok"}),
    );
    assert_eq!((s, j["state"].as_str()), (200, Some("done")), "{j}");
    let (s, e) = step(
        operator,
        json!({"done": 7, "state": "running", "detail": "again"}),
    );
    assert_eq!(s, 409, "a finished job took a step: {e}");
    let jobs = site.json(&["jobs"]);
    assert!(
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id && j["detail"] == "welcome: ok"),
        "{jobs}"
    );
}
