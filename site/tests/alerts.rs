//! Alerts the site evaluates itself, with real parts: a real master target stopped and
//! restarted, a real agent killed; a webhook receiver that fails the first two POSTs (the site
//! retries with backoff), signed bodies checked with HMAC-SHA256; acknowledgement refused to a
//! viewer and audited; mail through a real SMTP sink (aiosmtpd); `events --follow --json`;
//! a policy's drill period makes the target drill by itself, and a drill that fails (no file
//! system on the disk) raises `drill_failed` with the target's summary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hook::Receiver;
use common::protect::{fast_g1_on_t1, protect_g1_with_agent};
use common::site::{scratch, site_bin, start_fresh, Backend, Site};
use common::smtp::SmtpSink;
use common::target::{add_target, target, target_with, wait, wait_first_up};
use hmac::{Hmac, Mac};
use rewind_benches::harness;
use serde_json::Value;

const SECRET: &str = "a-shared-secret-of-some-length";

/// `events --follow --json` in the background, its output in a file; killed by pid on drop.
struct Follow {
    child: Child,
    out: PathBuf,
}

impl Follow {
    fn start(site: &Site, out: &Path) -> Follow {
        let child = Command::new(site_bin())
            .arg("--state")
            .arg(&site.state)
            .arg("--site")
            .arg(&site.url)
            .args(["--json", "events", "--follow", "--limit", "1"])
            .env_remove("REWIND_SITE_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out).expect("follow output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn events --follow");
        Follow {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Every event printed so far (each line must be one JSON object).
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
            .collect()
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Firing alerts but `journal_full`: the test's target shares the host's file system, which may
/// well be over 90% full (then that alert is real, and stays while the test runs).
fn open_alerts(site: &Site) -> Vec<Value> {
    let all = site.json(&["alerts"]);
    all.as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] != "journal_full")
        .cloned()
        .collect()
}

fn firing(site: &Site, kind: &str, subject: &str) -> Option<Value> {
    site.json(&["alerts"])
        .as_array()?
        .iter()
        .find(|a| a["kind"] == kind && a["subject"] == subject)
        .cloned()
}

fn notice<'a>(n: &'a [Value], transition: &str, kind: &str) -> Option<&'a Value> {
    n.iter()
        .find(|n| n["transition"] == transition && n["alert"]["kind"] == kind)
}

fn alerts_end_to_end(backend: &Backend) {
    let work = scratch();
    let site = start_fresh(work.path(), backend);

    // Channels: checked at the edge, admin only, the secret never shown back.
    let hook = Receiver::start(2);
    let secret_file = work.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let e = site.fails(&["alerts", "webhook", "bad", "--url", "ftp://x/"]);
    assert!(e.contains("scheme"), "{e}");
    let e = site.fails(&["alerts", "webhook", "bad", "--url", "https://u:p@x/"]);
    assert!(e.contains("credentials"), "{e}");
    let viewer = site.ok(&["token", "add", "watcher", "--role", "viewer"]);
    let viewer = [("REWIND_SITE_TOKEN", viewer.trim())];
    let out = site.cli_env(&["alerts", "webhook", "x", "--url", &hook.url], &viewer);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs the admin role"));
    // A target, a policy with a short RPO target, a protected group and its agent.
    let (mut t1, mut agent) = fast_g1_on_t1(&site, work.path());
    let start = Instant::now();
    loop {
        let g = site.json(&["groups"]);
        let ok = g
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "g1" && g["state"] == "ok");
        let a = open_alerts(&site);
        if ok && a.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "g1 not ok with nothing firing: groups {g}\nalerts {a:?}\n{}\nagent: {}",
            site.log_text(),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the evaluator (once a second) see the inventory that made the group ok: what it fires
    // then (`journal_full` on a full host) is not for the channels below.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(open_alerts(&site).is_empty(), "{:?}", open_alerts(&site));
    // Channels once all is quiet (the initial sync's `resync` alert resolved): the first notice
    // the receiver refuses twice is target_down's.
    site.ok(&[
        "alerts",
        "webhook",
        "hook",
        "--url",
        &hook.url,
        "--secret-file",
        secret_file.to_str().unwrap(),
    ]);
    let smtp = SmtpSink::start(work.path());
    if let Some(s) = &smtp {
        site.ok(&[
            "alerts",
            "email",
            "mail",
            "--smtp",
            &format!("smtp://127.0.0.1:{}", s.port),
            "--from",
            "rewind@site.example",
            "--to",
            "ops@example.com, oncall@example.com",
        ]);
    }
    let chans = site.json(&["alerts", "channels"]);
    assert_eq!(chans[0]["name"], "hook");
    assert!(!chans.to_string().contains(SECRET), "{chans}");

    let follow = Follow::start(&site, &work.path().join("follow.jsonl"));

    // The target stops: target_down fires, then the RPO bound passes 0.75x and 1x of 6 s.
    t1.mtd.stop();
    let stopped = Instant::now();
    wait(Duration::from_secs(15), "target_down firing", || {
        firing(&site, "target_down", "t1").is_some()
    });
    wait(Duration::from_secs(20), "rpo_breach firing", || {
        firing(&site, "rpo_breach", "g1").is_some()
    });
    let w = firing(&site, "rpo_warning", "g1").expect("rpo_warning fires with the breach");
    assert_eq!(w["severity"], "warning");
    let b = firing(&site, "rpo_breach", "g1").unwrap();
    assert!(
        b["summary"].as_str().unwrap().contains("of its 6 s target"),
        "{b}"
    );
    let text = site.ok(&["alerts"]);
    assert!(
        text.contains("target_down") && text.contains("critical"),
        "{text}"
    );
    // The webhook failed twice (HTTP 500), then took it: retried with backoff.
    wait(Duration::from_secs(30), "webhook got target_down", || {
        notice(&hook.notices(), "fired", "target_down").is_some()
    });
    eprintln!(
        "target_down at the webhook {:.1} s after the target stopped (2 refusals first)",
        stopped.elapsed().as_secs_f64()
    );
    // Each attempt of one delivery carries its id: target_down's was refused twice, then taken,
    // the waits between attempts doubling (1 s, then 2 s).
    let hits = hook.hits();
    let desc: Vec<String> = hits
        .iter()
        .map(|h| {
            format!(
                "{} {} {}",
                h.delivery,
                h.accepted,
                String::from_utf8_lossy(&h.body)
            )
        })
        .collect();
    let td: Vec<_> = hits
        .iter()
        .filter(|h| {
            let v: Value = serde_json::from_slice(&h.body).unwrap();
            v["alert"]["kind"] == "target_down" && v["transition"] == "fired"
        })
        .collect();
    assert_eq!(
        td.iter().map(|h| h.accepted).collect::<Vec<_>>(),
        [false, false, true],
        "{desc:#?}"
    );
    assert!(td.iter().all(|h| h.delivery == td[0].delivery), "{desc:#?}");
    let (g1, g2) = (td[1].at - td[0].at, td[2].at - td[1].at);
    assert!(
        g1 >= Duration::from_millis(900) && g2 >= Duration::from_millis(1900),
        "retries after {g1:?}, {g2:?}"
    );
    for h in &hits {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&h.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(h.signature.as_deref(), Some(want.as_str()), "signature");
    }
    let ds = site.json(&["alerts", "deliveries"]);
    let first = ds
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"].as_i64() == td[0].delivery.parse().ok())
        .unwrap_or_else(|| panic!("no delivery {} in {ds}", td[0].delivery));
    assert_eq!(first["channel"], "hook");
    assert_eq!(
        (first["state"].as_str(), first["attempts"].as_i64()),
        (Some("delivered"), Some(3)),
        "{ds}"
    );

    // Acknowledge: refused to a viewer (and audited), done by the admin, once.
    let id = firing(&site, "target_down", "t1").unwrap()["id"].to_string();
    let out = site.cli_env(&["alerts", "ack", &id], &viewer);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        e.contains("needs the operator role") && e.contains("HTTP 403"),
        "{e}"
    );
    site.ok(&["alerts", "ack", &id]);
    let e = site.fails(&["alerts", "ack", &id]);
    assert!(e.contains("acknowledged already by cert admin"), "{e}");
    assert_eq!(
        firing(&site, "target_down", "t1").unwrap()["acked_by"],
        "cert admin"
    );
    let audit = site.ok(&["audit"]);
    assert!(
        audit.contains("alert.ack") && audit.contains("denied"),
        "{audit}"
    );

    // The target returns: everything resolves, and the webhook hears it.
    t1.mtd.restart();
    wait(Duration::from_secs(60), "all resolved", || {
        open_alerts(&site).is_empty()
    });
    let all = site.json(&["alerts", "--all"]);
    let td = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "target_down")
        .unwrap();
    assert_eq!(td["state"], "resolved");
    assert!(td["resolved_ms"].as_i64().unwrap() >= td["fired_ms"].as_i64().unwrap());
    wait(Duration::from_secs(15), "webhook got resolved", || {
        let n = hook.notices();
        notice(&n, "resolved", "target_down").is_some()
            && notice(&n, "resolved", "rpo_breach").is_some()
    });

    // The agent is killed: agent_not_seen reaches the webhook within 10 s.
    let not_seen = |n: &[Value]| {
        n.iter()
            .filter(|n| n["transition"] == "fired" && n["alert"]["kind"] == "agent_not_seen")
            .count()
    };
    let before = not_seen(&hook.notices());
    agent.kill9();
    let killed = Instant::now();
    let took = wait(
        Duration::from_secs(20),
        "agent_not_seen at the webhook",
        || not_seen(&hook.notices()) > before,
    );
    eprintln!(
        "bar alert-delay-s: {:.2} (agent killed until the webhook has the alert, want < 10)",
        took.as_secs_f64()
    );
    assert!(killed.elapsed() < Duration::from_secs(10), "{took:?}");

    // Mail: the SMTP sink has the alerts, to both recipients.
    if let Some(s) = &smtp {
        wait(Duration::from_secs(20), "mail for target_down", || {
            s.messages()
                .iter()
                .any(|m| m.contains("[rewind] FIRED critical target_down t1"))
        });
        let m = s.messages();
        let td = m.iter().find(|m| m.contains("target_down t1")).unwrap();
        assert!(
            td.contains("ops@example.com") && td.contains("oncall@example.com"),
            "{td}"
        );
        assert!(
            m.iter()
                .any(|m| m.contains("[rewind] RESOLVED critical target_down t1")),
            "{m:?}"
        );
    }

    // `events --follow --json`: the state changes as they happened, one JSON object a line.
    wait(Duration::from_secs(10), "follow saw the alerts", || {
        let ev = follow.events();
        let has = |k: &str| ev.iter().any(|e| e["kind"] == k);
        has("alert.fired") && has("alert.resolved") && has("target.down") && has("alert.acked")
    });
    let ev = follow.events();
    let ids: Vec<i64> = ev.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, no repeats: {ids:?}"
    );
    drop(follow);
    drop(agent);
}

#[test]
fn alerts_fire_resolve_ack_and_reach_webhook_and_mail_on_both_backends() {
    if !harness::can_run() {
        return;
    }
    for b in Backend::all() {
        eprintln!("backend {}", b.name());
        alerts_end_to_end(&b);
    }
}

/// Sessions a target refuses at HELLO reach the site through its event stream
/// (`session.refused`, with the ERROR code): what `crc_rejects` and `fenced_agent` count. Our
/// own agent stops for good once fenced (and will not start again), so the refusal here is an
/// agent whose certificate names another host (`Forbidden`); the conditions themselves are
/// unit-tested in `alerts::conditions`.
#[test]
fn refused_sessions_reach_the_site_with_their_code() {
    if !harness::can_run() {
        return;
    }
    let work = scratch();
    let site = start_fresh(work.path(), &Backend::Sqlite);
    let t1 = target(work.path(), &site.state, "t1");
    add_target(&site, "t1", &t1);
    site.ok(&["policy", "create", "p", "--rpo", "1m", "--retention", "1h"]);
    wait_first_up(&site, "t1");
    // The harness's agent says it is test-agent: its certificate says otherwise.
    let agent = protect_g1_with_agent(&site, work.path(), "other-host", "p", "t1", &t1);
    let took = wait(
        Duration::from_secs(30),
        "a refusal in the site's events",
        || {
            let ev = site.json(&["events"]);
            ev.as_array().unwrap().iter().any(|e| {
                e["kind"] == "target.session.refused"
                    && e["subject"] == "g1"
                    && e["detail"]
                        .as_str()
                        .unwrap()
                        .contains("\"code\":\"Forbidden\"")
            })
        },
    );
    eprintln!("refusal seen by the site {took:?} after the agent started");
    drop(agent);
}

/// A policy with `--drill-every` reaches the target, which drills the group by itself; the disk
/// holds random bytes (no file system), so the file system check fails, and the site, polling
/// the target's `drill` field, fires `drill_failed` with the target's summary.
#[test]
fn a_failed_scheduled_drill_raises_an_alert_on_both_backends() {
    if !harness::can_run() {
        return;
    }
    for b in Backend::all() {
        eprintln!("backend {}", b.name());
        failed_drill_alert(&b);
    }
}

fn failed_drill_alert(backend: &Backend) {
    let work = scratch();
    let site = start_fresh(work.path(), backend);
    let views = work.path().join("views");
    let t1 = target_with(
        work.path(),
        &site.state,
        "t1",
        &["--views", views.to_str().unwrap()],
    );
    add_target(&site, "t1", &t1);
    let e = site.fails(&[
        "policy",
        "create",
        "p",
        "--rpo",
        "1m",
        "--retention",
        "1h",
        "--drill-every",
        "soon",
    ]);
    assert!(e.contains("drill_every"), "{e}");
    site.ok(&[
        "policy",
        "create",
        "p",
        "--rpo",
        "1m",
        "--retention",
        "1h",
        "--drill-every",
        "2s",
    ]);
    wait_first_up(&site, "t1");
    let mut agent = protect_g1_with_agent(&site, work.path(), "test-agent", "p", "t1", &t1);
    harness::write_random_mib(&agent.link("d0"), 0, 1, 17);
    agent.wait_caught_up(Duration::from_secs(60));
    let took = wait(Duration::from_secs(60), "drill_failed for g1", || {
        firing(&site, "drill_failed", "g1").is_some()
    });
    let a = firing(&site, "drill_failed", "g1").unwrap();
    let summary = a["summary"].as_str().unwrap();
    assert!(summary.contains("probe fs-check d0 failed"), "{summary}");
    eprintln!("drill_failed fired {took:?} after the agent caught up");
    agent.stop();
}
