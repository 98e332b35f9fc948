//! The web console in a real headless Chromium and Firefox (WebDriver), against a real site, a real master
//! target and a real agent: sign in, watch a replicating group's RPO samples arrive live, run a
//! test failover from the group's page and follow its job to the end, clean it up, see an alert
//! fire when the target stops and resolve when it returns; a screenshot of every page, checked
//! not blank and under its heading; a viewer sees no actions and the API refuses them (403), and
//! a cookie without its CSRF token changes nothing.

#[path = "console/browser.rs"]
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::{Browser, Kind};
use common::protect::fast_g1_on_t1;
use common::site::{scratch, start_fresh, Backend, Site};
use common::target::wait;
use rewind_benches::harness;
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

/// One machine from g1; its "VM" is a shell that prints the line the health check waits for.
const PLAN: &str = r#"name = "drill"

[[boot_group]]
name = "only"

[[boot_group.machine]]
name = "m1"
group = "g1"
boot = "echo rewind-vm: healthy; exec sleep 600"
health = { console = "rewind-vm: healthy" }
timeout_secs = 60
"#;

fn add_user(site: &Site, work: &std::path::Path, name: &str, role: &str) {
    let f = work.join(format!("{name}.password"));
    std::fs::write(&f, format!("{PASSWORD}\n")).unwrap();
    site.ok(&[
        "user",
        "add",
        name,
        "--role",
        role,
        "--password-from",
        f.to_str().unwrap(),
    ]);
}

fn login(b: &Browser, site: &Site, user: &str) {
    b.goto(&format!("{}/console/", site.url));
    b.wait(Duration::from_secs(10), "the login page", |b| {
        b.text("h1") == "Sign in"
    });
    b.fill("input[name=user]", user);
    b.fill("input[name=password]", PASSWORD);
    b.click("form.login button");
    b.wait(Duration::from_secs(10), "the overview after login", |b| {
        b.text("h1") == "Overview"
    });
}

/// Visit `path`, check its heading, save a non-blank screenshot.
fn visit(b: &Browser, site: &Site, path: &str, heading: &str, shot: &str) {
    b.goto(&format!("{}{path}", site.url));
    b.wait(Duration::from_secs(10), heading, |b| {
        b.text("h1") == heading
    });
    std::thread::sleep(Duration::from_millis(300));
    b.screenshot(shot);
}

/// An HTTPS client trusting the site's (test) CA, for the API checks.
fn http(site: &Site) -> reqwest::Client {
    let ca = std::fs::read(site.state.join("ca").join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POST `path` with the session cookie (and the CSRF token if given): (status, body).
fn post(
    b: &Browser,
    site: &Site,
    cookie: &str,
    csrf: Option<&str>,
    path: &str,
    body: &str,
) -> (u16, String) {
    let c = http(site);
    b.rt.block_on(async {
        let mut r = c
            .post(format!("{}{path}", site.url))
            .header("cookie", format!("rewind_session={cookie}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// Submit an action form of the group page and wait for its job to end; the job's detail.
fn run_job(b: &Browser, form: &str, limit: Duration) -> String {
    let before = b.count(".job[data-job]");
    b.click(&format!("{form} button[type=submit]"));
    b.wait(Duration::from_secs(15), "the job to start", |b| {
        b.count(".job[data-job]") > before || !b.text("#result.failed").is_empty()
    });
    let failed = b.text("#result.failed");
    assert!(failed.is_empty(), "{form}: {failed}");
    let id = b
        .js("const j = document.querySelectorAll('.job[data-job]'); return j[j.length-1].dataset.job;")
        .as_str()
        .unwrap()
        .to_string();
    let sel = format!(".job[data-job='{id}']");
    let mut seen_progress = Vec::new();
    b.wait(limit, "the job to end", |b| {
        let count = b.text(&format!("{sel} .count"));
        if seen_progress.last() != Some(&count) {
            seen_progress.push(count);
        }
        let s = b.text(&format!("{sel} .state"));
        s == "done" || s == "failed"
    });
    let state = b.text(&format!("{sel} .state"));
    let detail = b.text(&format!("{sel} .detail"));
    assert_eq!(state, "done", "job {id} of {form}: {detail}");
    eprintln!("{form}: job {id} done, progress seen {seen_progress:?}: {detail}");
    detail
}

fn console_end_to_end(kind: Kind) {
    let work = scratch();
    let site = start_fresh(work.path(), &Backend::Sqlite);
    add_user(&site, work.path(), "olivia", "operator");
    add_user(&site, work.path(), "victor", "viewer");

    // A target, a policy with a short RPO target, a protected group and its agent.
    let (mut t1, agent) = fast_g1_on_t1(&site, work.path());
    wait(Duration::from_secs(60), "g1 ok", || {
        site.json(&["groups"])
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "g1" && g["state"] == "ok")
    });

    // Data through the agent: something to fail over to, and churn for the charts.
    harness::write_random_mib(&agent.link("d0"), 0, 4, 7);
    wait(Duration::from_secs(60), "g1 has replicated data", || {
        site.json(&["groups"])
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "g1" && g["durable_seq"].as_i64() > Some(0))
    });

    let b = Browser::start(kind, work.path());
    // Signed out: every page leads to the login; a wrong password is refused.
    b.goto(&format!("{}/console/groups/g1", site.url));
    b.wait(Duration::from_secs(10), "login page", |b| {
        b.text("h1") == "Sign in"
    });
    b.screenshot("login");
    b.fill("input[name=user]", "olivia");
    b.fill("input[name=password]", "not the password");
    b.click("form.login button");
    b.wait(Duration::from_secs(10), "refusal", |b| {
        b.text("p.error").contains("Wrong user name or password")
    });
    login(&b, &site, "olivia");
    let cookie = b.cookie("rewind_session");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let sid = cookie.value().to_string();
    assert_eq!(b.count(".heat a.cell[href='/console/groups/g1']"), 1);
    b.screenshot("overview");

    // The group page: the RPO chart gains samples while the page stays open (live, no reload).
    b.goto(&format!("{}/console/groups/g1", site.url));
    b.wait(Duration::from_secs(10), "group page", |b| {
        b.text("h1") == "Group g1"
    });
    b.js("document.body.dataset.marker = 'same page'; return 1;");
    let samples = |b: &Browser| {
        b.js("const f = document.querySelector('figure.chart'); return f ? Number(f.dataset.samples) : 0;")
            .as_u64()
            .unwrap_or(0)
    };
    let first = samples(&b);
    b.wait(
        Duration::from_secs(40),
        "new RPO samples on the open page",
        |b| samples(b) >= first + 2,
    );
    assert_eq!(b.text("#rpo"), "0.0 s", "a fed group's RPO bound is 0");
    // Churn, bytes sent and bytes on the wire come from the agent's reports: each line has
    // points once two samples carry them.
    b.wait(Duration::from_secs(40), "churn, sent and wire lines", |b| {
        ["captured", "sent", "wire"]
            .iter()
            .all(|c| b.count(&format!("polyline.series.{c}")) == 1)
    });
    assert!(b.text("#forecast h2").contains("journal forecast"));
    assert!(
        b.text("#verified").contains("No drill has verified"),
        "{}",
        b.text("#drills")
    );
    assert!(
        b.text("#history-span").contains("of the policy"),
        "{}",
        b.text("#forecast")
    );
    assert_eq!(b.js("return document.body.dataset.marker;"), "same page");
    assert!(b.count("#actions form.act-form") >= 7);
    b.screenshot("group");

    // Test failover at the newest point, from the page, followed to the end; then clean up.
    b.select(
        "form[data-url$='/failover/test'] select[name=point]",
        "latest",
    );
    run_job(
        &b,
        "form[data-url$='/failover/test']",
        Duration::from_secs(120),
    );
    b.screenshot("group-test-failover");
    run_job(
        &b,
        "form[data-url$='/failover/cleanup']",
        Duration::from_secs(120),
    );
    visit(&b, &site, "/console/jobs", "Jobs", "jobs");
    assert!(b.count("tr[data-job].done") >= 2, "{}", b.text("main"));

    // A recovery plan of one machine (its "VM" a shell that prints the health line), run in
    // test mode from the plans page: its steps and RTO appear live, then it is cleaned up.
    let csrf = b.js("return document.body.dataset.csrf;");
    let plan = serde_json::json!({"name": "drill", "text": PLAN}).to_string();
    let (status, body) = post(&b, &site, &sid, csrf.as_str(), "/v1/plans", &plan);
    assert!(
        (200..300).contains(&status),
        "POST /v1/plans: {status} {body}"
    );
    visit(
        &b,
        &site,
        "/console/plans",
        "Recovery plans",
        "plans-before-run",
    );
    b.wait(Duration::from_secs(10), "the plan listed", |b| {
        b.count("tr[data-plan=drill] button.act") == 2
    });
    b.click("tr[data-plan=drill] button.act");
    b.wait(Duration::from_secs(120), "the plan's run to end", |b| {
        b.count("#runs .run.succeeded") + b.count("#runs .run.failed") >= 1
    });
    let run = b.text("#runs .run");
    assert!(b.count("#runs .run.succeeded") == 1, "{run}");
    assert!(run.contains("RTO") && run.contains("m1"), "{run}");
    eprintln!("plan run on the page: {run}");
    b.screenshot("plans-run");
    b.click("tr[data-plan=drill] button.act:nth-of-type(2)");
    b.wait(Duration::from_secs(60), "the plan cleaned up", |b| {
        b.count("#runs .run.cleaned") == 1
    });

    // The target stops: the overview shows the alert and a growing RPO without a reload.
    visit(&b, &site, "/console/", "Overview", "overview-before-stop");
    b.js("document.body.dataset.marker = 'overview'; return 1;");
    t1.mtd.stop();
    let stopped = Instant::now();
    b.wait(
        Duration::from_secs(30),
        "target_down on the overview",
        |b| b.count("#open-alerts tr[data-alert=target_down]") == 1,
    );
    eprintln!(
        "target_down on the open overview {:.1} s after the stop",
        stopped.elapsed().as_secs_f64()
    );
    b.wait(
        Duration::from_secs(30),
        "g1 among the worst offenders",
        |b| b.text("#worst").contains("g1") && b.text("#worst td.rpo") != "0.0 s",
    );
    assert_eq!(b.js("return document.body.dataset.marker;"), "overview");
    b.screenshot("overview-target-down");
    visit(&b, &site, "/console/alerts", "Alerts", "alerts");
    assert!(b.count("tr[data-alert=target_down][data-state=firing] button.act") == 1);
    b.click("tr[data-alert=target_down][data-state=firing] button.act");
    b.wait(Duration::from_secs(10), "acknowledged", |b| {
        b.js("const r = document.querySelector('tr[data-alert=target_down][data-state=firing]'); return r ? r.textContent : '';")
            .as_str()
            .unwrap_or_default()
            .contains("user olivia")
    });
    visit(
        &b,
        &site,
        "/console/targets",
        "Master targets",
        "targets-down",
    );
    assert_eq!(b.text("tr[data-target=t1] td.state"), "down");
    t1.mtd.restart();
    visit(&b, &site, "/console/", "Overview", "overview-returning");
    b.wait(Duration::from_secs(60), "target_down resolved", |b| {
        b.count("#open-alerts tr[data-alert=target_down]") == 0
    });
    visit(&b, &site, "/console/alerts", "Alerts", "alerts-resolved");
    assert!(b.count("tr[data-alert=target_down][data-state=resolved]") >= 1);
    visit(&b, &site, "/console/targets", "Master targets", "targets");
    visit(&b, &site, "/console/plans", "Recovery plans", "plans");
    visit(&b, &site, "/console/audit", "Audit log", "audit");
    assert!(b.text("#audit").contains("console.login"));
    visit(&b, &site, "/console/groups", "Groups", "groups");

    // CSRF: the operator's own cookie without the token changes nothing.
    let (status, body) = post(
        &b,
        &site,
        &sid,
        None,
        "/v1/groups/g1/tag",
        r#"{"name":"x"}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");

    // Sign out, then a viewer: no actions on the pages, refused by the API.
    b.click("form.logout button");
    b.wait(Duration::from_secs(10), "signed out", |b| {
        b.text("h1") == "Sign in"
    });
    let (status, _) = post(&b, &site, &sid, None, "/v1/alerts/1/ack", "{}");
    assert_eq!(status, 401, "a signed-out session opens nothing");
    login(&b, &site, "victor");
    b.goto(&format!("{}/console/groups/g1", site.url));
    b.wait(Duration::from_secs(10), "group page", |b| {
        b.text("h1") == "Group g1"
    });
    assert_eq!(b.count("#actions"), 0);
    assert_eq!(b.count("form.act-form"), 0);
    b.screenshot("group-viewer");
    b.goto(&format!("{}/console/alerts", site.url));
    b.wait(Duration::from_secs(10), "alerts", |b| {
        b.text("h1") == "Alerts"
    });
    assert_eq!(b.count("button.act"), 0);
    b.goto(&format!("{}/console/audit", site.url));
    b.wait(Duration::from_secs(10), "403", |b| {
        b.text("h1") == "Error 403"
    });
    b.screenshot("audit-viewer");
    let vid = b.cookie("rewind_session").value().to_string();
    let csrf = b.js("return document.body.dataset.csrf;");
    let csrf = csrf.as_str().unwrap();
    for (path, body) in [
        ("/v1/groups/g1/failover/test", r#"{"point":"latest"}"#),
        ("/v1/groups/g1/tag", r#"{"name":"v"}"#),
        ("/v1/alerts/1/ack", "{}"),
    ] {
        let (status, text) = post(&b, &site, &vid, Some(csrf), path, body);
        assert_eq!(status, 403, "{path}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"].as_str().unwrap().contains("viewer"), "{text}");
    }
    let audit = site.ok(&["audit"]);
    assert!(
        audit.contains("user victor") && audit.contains("denied"),
        "{audit}"
    );

    browser::keep_screenshots(&b.shots);
    drop(b);
    drop(agent);
}

#[test]
fn console_in_a_real_browser() {
    if !harness::can_run() || !browser::available(Kind::Chromium) {
        return;
    }
    console_end_to_end(Kind::Chromium);
}

/// The same walk in Firefox: the console is plain HTML, CSS and one script of ours, and must
/// work in both engines current Linux desktops ship.
#[test]
fn console_in_firefox() {
    if !harness::can_run() || !browser::available(Kind::Firefox) {
        return;
    }
    console_end_to_end(Kind::Firefox);
}
