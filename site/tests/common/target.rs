//! Master targets for site tests: `rewind-mtd serve --control-listen` with a server certificate
//! from the site's CA, on fixed ports so a restarted target is where the site knew it.

use std::path::Path;
use std::time::{Duration, Instant};

use rewind_benches::harness::{self, Mtd};

use super::site::Site;

/// A master target whose server certificate comes from the site's CA.
pub struct Target {
    pub mtd: Mtd,
    pub control: String,
    pub agents: String,
}

pub fn target(work: &Path, state: &Path, name: &str) -> Target {
    target_with(work, state, name, &[])
}

/// Like [`target`], with more `serve` flags (`--views DIR` for failovers' loop devices).
pub fn target_with(work: &Path, state: &Path, name: &str, extra: &[&str]) -> Target {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let tls = dir.join("tls");
    harness::run_ok(
        std::process::Command::new(harness::bin("rewind-mtd"))
            .args([
                "ca",
                "issue",
                "--server",
                name,
                "--host",
                "127.0.0.1",
                "--dir",
            ])
            .arg(state.join("ca"))
            .arg("--out")
            .arg(&tls),
    );
    // Fixed ports, so that a restarted target is where the site and its agents knew it.
    let (agents, control) = (free_addr(), free_addr());
    let mut args = vec![
        "--listen",
        &agents,
        "--tls-dir",
        tls.to_str().unwrap(),
        "--control-listen",
        &control,
    ];
    args.extend_from_slice(extra);
    let mtd = Mtd::start_engine(&dir, "sync", &args);
    let lines = mtd.ready_lines();
    let control = lines
        .iter()
        .find_map(|l| l.strip_prefix("control-tcp "))
        .unwrap_or_else(|| panic!("no control-tcp line in {lines:?}"))
        .to_string();
    Target {
        agents: lines[0].clone(),
        mtd,
        control,
    }
}

/// `target add NAME --url https://CONTROL --agents AGENTS`: `t` registered with `site`.
pub fn add_target(site: &Site, name: &str, t: &Target) {
    site.ok(&[
        "target",
        "add",
        name,
        "--url",
        &format!("https://{}", t.control),
        "--agents",
        &t.agents,
    ]);
}

/// Wait (15 s at most) until the site's first target, `name` (the only one the test
/// registered), is up.
pub fn wait_first_up(site: &Site, name: &str) {
    wait(Duration::from_secs(15), &format!("{name} up"), || {
        site.json(&["target", "list"])[0]["state"] == "up"
    });
}

pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("address").to_string()
}

/// Poll `f` every 100 ms until it returns `Ok`; how long it took. Panics after `limit` with what
/// `f` said last, so a timeout shows the state the test was waiting on, not only that it waited.
pub fn wait_ok(limit: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) -> Duration {
    let start = Instant::now();
    loop {
        match f() {
            Ok(()) => return start.elapsed(),
            Err(last) => assert!(
                start.elapsed() < limit,
                "{what}: not within {limit:?}; last seen: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Poll `f` every 100 ms until it is true; how long it took. Panics after `limit`.
pub fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    wait_ok(limit, what, || {
        f().then_some(()).ok_or_else(|| "not yet".into())
    })
}
