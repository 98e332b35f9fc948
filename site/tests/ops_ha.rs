//! Site operations and a change of leader (PostgreSQL, two instances): a standby refuses to
//! start operations; a plan run whose leader is killed is marked failed with the reason by the
//! new leader and never run again, and the new leader cleans it up on the target.

mod common;

use std::time::Duration;

use common::api::call;
use common::pg::Pg;
use common::protect::protect_one;
use common::site::{init, scratch, Site};
use common::target::{target, wait};
use rewind_benches::harness;
use serde_json::json;

const PLAN: &str = r#"name = "slow"

[[boot_group]]
name = "only"

[[boot_group.machine]]
name = "m1"
group = "g1"
boot = "sleep 120"
health = { command = "false" }
timeout_secs = 120
"#;

#[test]
fn a_plan_run_of_a_killed_leader_is_failed_with_the_reason_not_run_twice() {
    if !harness::can_run() {
        return;
    }
    let Some(pg) = Pg::start() else { return };
    let work = scratch();
    let w = work.path();
    let state = w.join("state");
    let db = pg.url();
    init(&state, &db);
    let mut a = Site::start(&state, &db, 1);
    a.wait_leader(Duration::from_secs(10));
    let b = Site::start(&state, &db, 2);
    let t1 = target(w, &state, "t1");
    a.ok(&[
        "target",
        "add",
        "t1",
        "--url",
        &format!("https://{}", t1.control),
        "--agents",
        &t1.agents,
    ]);
    a.ok(&[
        "policy",
        "create",
        "gold",
        "--rpo",
        "15m",
        "--retention",
        "1h",
    ]);
    let op = a
        .ok(&["token", "add", "ops", "--role", "operator"])
        .trim()
        .to_string();
    wait(Duration::from_secs(15), "t1 up", || {
        a.json(&["target", "list"])[0]["state"] == "up"
    });
    let img = w.join("d1.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut p = protect_one(&a, w, "h1", "g1", &[("d0", &img)], "gold", Some("t1"));
    harness::write_random_mib(&p.agent.link("d0"), 0, 2, 1);
    p.agent.wait_caught_up(Duration::from_secs(60));
    wait(Duration::from_secs(30), "g1 ok", || {
        a.json(&["groups"])[0]["state"] == "ok"
    });
    let (s, v) = call(
        &a,
        &op,
        "POST",
        "/v1/plans",
        Some(json!({"name": "slow", "text": PLAN})),
    );
    assert_eq!(s, 200, "{v}");

    // The standby refuses to start operations: they run on the leader.
    let (s, v) = call(
        &b,
        &op,
        "POST",
        "/v1/plans/slow/run",
        Some(json!({"mode": "test"})),
    );
    assert_eq!(s, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("standby"), "{v}");

    let (s, v) = call(
        &a,
        &op,
        "POST",
        "/v1/plans/slow/run",
        Some(json!({"mode": "test"})),
    );
    assert_eq!(s, 202, "{v}");
    let job = v["job"].as_i64().unwrap();
    let mut st = json!(null);
    let started = std::time::Instant::now();
    while st["machines"][0]["state"] != "booting" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "m1 not booting on t1: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
        st = t1.mtd.rewind_json(&["plan", "status"]);
    }
    eprintln!("plan running on t1 after {:?}", started.elapsed());
    let target_run = t1.mtd.rewind_json(&["plan", "status"])["started_ms"].clone();

    a.kill9();
    b.wait_leader(Duration::from_secs(10));
    let (_, runs) = call(&b, &op, "GET", "/v1/plans/slow/runs", None);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["state"], "failed", "{runs}");
    assert!(
        runs[0]["detail"]
            .as_str()
            .unwrap()
            .contains("stopped leading"),
        "{runs}"
    );
    let (_, j) = call(&b, &op, "GET", &format!("/v1/jobs/{job}"), None);
    assert_eq!(j["state"], "failed", "{j}");
    assert!(
        j["detail"].as_str().unwrap().contains("stopped leading"),
        "{j}"
    );
    // Not run a second time: the target's run is the one the old leader started.
    std::thread::sleep(Duration::from_secs(2));
    let st = t1.mtd.rewind_json(&["plan", "status"]);
    assert_eq!(st["started_ms"], target_run, "{st}");
    assert_eq!(st["state"], "running", "{st}");

    // The new leader cleans the run up on the target.
    let (s, v) = call(&b, &op, "POST", "/v1/plans/slow/cleanup", Some(json!({})));
    assert_eq!(s, 202, "{v}");
    let id = v["job"].as_i64().unwrap();
    wait(Duration::from_secs(60), "cleanup job", || {
        call(&b, &op, "GET", &format!("/v1/jobs/{id}"), None).1["state"] != "running"
    });
    let (_, j) = call(&b, &op, "GET", &format!("/v1/jobs/{id}"), None);
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(t1.mtd.rewind_json(&["plan", "status"])["state"], "cleaned");
    let (_, runs) = call(&b, &op, "GET", "/v1/plans/slow/runs", None);
    assert_eq!(runs[0]["state"], "cleaned", "{runs}");
    p.agent.stop();
}
