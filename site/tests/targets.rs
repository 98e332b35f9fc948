//! The site with real master targets (`rewind-mtd serve --control-listen`, certificates from the
//! site CA) and a real agent set up from the bundle `protect` wrote: placement, the inventory
//! kept current, a target stopped (marked down, its groups unknown) and back.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::protect::{disk_image, g1_agent, protect_g1};
use common::site::{init, scratch, Backend, Site};
use common::target::{add_target, target, wait, Target};
use rewind_benches::harness;

fn find<'a>(list: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    list.as_array()?.iter().find(|x| x["name"] == name)
}

fn site_with_targets(backend: &Backend) {
    let work = scratch();
    let state = work.path().join("state");
    let db = backend.url(&state);
    init(&state, &db);
    assert!(
        state.join("ca/sites/site/site.crt").exists(),
        "init issues the site's certificate"
    );
    let site = Site::start(&state, &db, 0);
    site.wait_leader(Duration::from_secs(10));
    let mut t1 = target(work.path(), &state, "t1");
    let t2 = target(work.path(), &state, "t2");
    for (name, t) in [("t1", &t1), ("t2", &t2)] {
        add_target(&site, name, t);
    }
    let e = site.fails(&[
        "target",
        "add",
        "t1",
        "--url",
        &format!("https://{}", t2.control),
    ]);
    assert!(e.contains("already registered"), "{e}");
    let took = wait(Duration::from_secs(15), "both targets up", || {
        let ts = site.json(&["target", "list"]);
        ["t1", "t2"]
            .iter()
            .all(|n| find(&ts, n).is_some_and(|t| t["state"] == "up"))
    });
    eprintln!("targets up {took:?} after registration");

    // Protect a host: placed on a target that is up, bundle written.
    site.ok(&[
        "policy",
        "create",
        "gold",
        "--rpo",
        "15m",
        "--retention",
        "24h",
        "--level",
        "2",
    ]);
    let image = disk_image(work.path());
    let r = protect_g1(&site, "test-agent", &image, "gold", "t1");
    assert_eq!(r["target"], "t1");
    let bundle = PathBuf::from(r["bundle"].as_str().unwrap());
    for f in ["agent.toml", "ca.crt", "test-agent.crt", "test-agent.key"] {
        assert!(bundle.join(f).exists(), "bundle lacks {f}");
    }
    let toml: toml::Table =
        toml::from_str(&std::fs::read_to_string(bundle.join("agent.toml")).unwrap()).unwrap();
    assert_eq!(
        toml["target"].as_str(),
        Some(format!("tcp:{}", t1.agents).as_str())
    );
    assert_eq!(toml["group"].as_str(), Some("g1"));
    assert_eq!(toml["level"].as_integer(), Some(2));
    let e = site.fails(&[
        "protect",
        "test-agent",
        "--group",
        "g1",
        "--disk",
        "d0=/dev/x",
        "--policy",
        "gold",
    ]);
    assert!(e.contains("group g1 exists already"), "{e}");
    // Without --target: a target that is up.
    let r2 = site.json(&[
        "protect",
        "other",
        "--group",
        "g2",
        "--disk",
        "d0=/dev/y",
        "--policy",
        "gold",
    ]);
    assert!(r2["target"] == "t1" || r2["target"] == "t2");
    let groups = site.json(&["groups"]);
    assert_eq!(find(&groups, "g1").unwrap()["state"], "protected");

    // A real agent from the bundle: the group shows up on t1 through the poller.
    let agent = harness::can_run().then(|| g1_agent(work.path(), &image, &bundle, &t1));
    if agent.is_some() {
        wait(Duration::from_secs(30), "g1 seen on t1", || {
            let gs = site.json(&["groups"]);
            find(&gs, "g1").is_some_and(|g| {
                g["target"] == "t1" && g["state"] == "ok" && g["disks"][0][0] == "d0"
            })
        });
        // The agent with its software version (from its HELLO), from t1's event stream
        // (group.connected) and its groups report.
        wait(Duration::from_secs(10), "agent recorded", || {
            let agents = site.json(&["agents"]);
            find(&agents, "test-agent").is_some_and(|a| {
                a["target"] == "t1"
                    && a["group"] == "g1"
                    && a["version"] == env!("CARGO_PKG_VERSION")
            })
        });
        // What the agent reports of itself reaches the site through t1: streaming, with the
        // RPO it measured (caught up: well under a second).
        wait(Duration::from_secs(20), "agent report on the site", || {
            let gs = site.json(&["groups"]);
            find(&gs, "g1").is_some_and(|g| {
                g["agent_mode"] == "streaming"
                    && g["agent_rpo_ms"]
                        .as_i64()
                        .is_some_and(|ms| (0..5_000).contains(&ms))
                    && g["agent_report_ms"].as_i64().is_some_and(|t| t > 0)
            })
        });
    }

    // A policy for a label reaches the target of every group carrying it, and each change after.
    let on_target = |t: &Target, name: &str, want: u64| {
        let (status, body) = t.mtd.control_get("/v1/groups/g1/policy");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        status == 200 && v["policy"]["name"] == name && v["policy"]["version"] == want
    };
    if let Some(a) = &agent {
        // What `protect --policy gold` assigned reaches the target (the first push found no
        // group there yet, before the agent came: it is retried).
        wait(Duration::from_secs(15), "gold v1 on t1", || {
            on_target(&t1, "gold", 1)
        });
        site.ok(&[
            "policy",
            "create",
            "silver",
            "--rpo",
            "5m",
            "--retention",
            "2h",
            "--bandwidth",
            "mon-fri 08:00-18:00=20MiB/s, *=unlimited",
        ]);
        site.ok(&["group", "label", "g1", "tier=gold"]);
        site.ok(&["policy", "assign", "silver", "--label", "tier=gold"]);
        // The group's own assignment wins over its label's ...
        assert_eq!(
            find(&site.json(&["groups"]), "g1").unwrap()["policy"],
            "gold"
        );
        // ... until it is removed; then the label's applies.
        let e = site.fails(&["policy", "unassign", "--group", "g2x"]);
        assert!(e.contains("g2x"), "{e}");
        site.ok(&["policy", "unassign", "--group", "g1"]);
        let e = site.fails(&["policy", "unassign", "--group", "g1"]);
        assert!(e.contains("no policy is assigned to group:g1"), "{e}");
        assert_eq!(
            find(&site.json(&["groups"]), "g1").unwrap()["policy"],
            "silver"
        );
        let took = wait(Duration::from_secs(10), "silver v1 on t1", || {
            on_target(&t1, "silver", 1)
        });
        eprintln!(
            "bar policy-propagation-s: {:.2} (label assignment, want < 5)",
            took.as_secs_f64()
        );
        assert!(took < Duration::from_secs(5));
        site.ok(&["policy", "update", "silver", "--retention", "3h"]);
        let took = wait(Duration::from_secs(10), "silver v2 on t1", || {
            on_target(&t1, "silver", 2)
        });
        eprintln!(
            "bar policy-propagation-s: {:.2} (update, want < 5)",
            took.as_secs_f64()
        );
        assert!(took < Duration::from_secs(5));
        let (_, body) = t1.mtd.control_get("/v1/groups/g1/policy");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["policy"]["retention_secs"], 10_800, "{v}");
        wait(Duration::from_secs(10), "site sees v2 running", || {
            find(&site.json(&["groups"]), "g1")
                .is_some_and(|g| g["running_version"] == 2 && g["outdated"] == false)
        });
        // ... and the agent runs it too (the target passes it on, CONTROL policy).
        wait(Duration::from_secs(10), "the agent runs silver v2", || {
            a.status().policy.as_deref() == Some("silver v2")
        });
    }

    // t1 stops: marked down with the reason, its groups unknown; back when it returns.
    t1.mtd.stop();
    let took = wait(Duration::from_secs(10), "t1 marked down", || {
        find(&site.json(&["target", "list"]), "t1").is_some_and(|t| t["state"] == "down")
    });
    eprintln!("t1 marked down {took:?} after it stopped");
    let t = site.json(&["target", "list"]);
    let reason = find(&t, "t1").unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("connecting to https://"), "{reason}");
    assert_eq!(find(&t, "t2").unwrap()["state"], "up");
    if agent.is_some() {
        let gs = site.json(&["groups"]);
        assert_eq!(find(&gs, "g1").unwrap()["state"], "unknown", "{gs}");
    }
    let text = site.ok(&["groups"]);
    assert!(text.contains("unknown") || agent.is_none(), "{text}");
    if agent.is_some() {
        // A change while the target is down: shown as not yet running, pushed when it returns.
        // (A bandwidth for every hour of the week, so that the agent's limit changes now.)
        site.ok(&[
            "policy",
            "update",
            "silver",
            "--level",
            "4",
            "--bandwidth",
            "*=20MiB/s",
        ]);
        let g = site.json(&["groups"]);
        assert_eq!(find(&g, "g1").unwrap()["outdated"], true, "{g}");
        assert!(site.ok(&["groups"]).contains("OLD"));
    }
    t1.mtd.restart();
    wait(Duration::from_secs(15), "t1 up again", || {
        find(&site.json(&["target", "list"]), "t1").is_some_and(|t| t["state"] == "up")
    });
    if let Some(a) = &agent {
        wait(Duration::from_secs(30), "g1 ok again", || {
            find(&site.json(&["groups"]), "g1").is_some_and(|g| g["state"] == "ok")
        });
        wait(
            Duration::from_secs(10),
            "silver v3 on t1 after its restart",
            || on_target(&t1, "silver", 3),
        );
        // The agent runs v3, and its bandwidth limit is the schedule's 20 MiB/s.
        wait(Duration::from_secs(15), "the agent runs silver v3", || {
            a.status().policy.as_deref() == Some("silver v3")
        });
        wait(Duration::from_secs(10), "the agent's new bandwidth", || {
            a.log_text().lines().any(|l| {
                l.contains("bandwidth limit from the policy's schedule") && l.contains("20971520")
            })
        });
        let jobs = site.ok(&["jobs"]);
        assert!(
            jobs.contains("policy.push") && jobs.contains("done"),
            "{jobs}"
        );
    }
    let events = site.ok(&["events"]);
    assert!(
        events.contains("target.down") && events.contains("target.up"),
        "{events}"
    );
    drop(agent);
}

#[test]
fn targets_placement_and_a_target_down_and_back_on_both_backends() {
    for b in Backend::all() {
        eprintln!("backend {}", b.name());
        site_with_targets(&b);
    }
}
