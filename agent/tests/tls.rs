//! Mutual TLS from the agent to the target, with real processes: `rewind-mtd ca init/issue` make
//! the files, the agent replicates over TLS to 127.0.0.1, and every way of getting it wrong (a
//! certificate from another CA on either side, an agent name that is not the certificate's,
//! plain TCP) is refused with a message that says so.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rewind_agent::state::status::Status;

/// `rewind-mtd ca init --dir DIR` and `ca issue` for each agent.
fn ca(dir: &Path, agents: &[&str]) {
    run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["ca", "init", "--dir"])
            .arg(dir),
    );
    for a in agents {
        run_ok(
            Command::new(bin("rewind-mtd"))
                .args(["ca", "issue", "--agent", a, "--dir"])
                .arg(dir),
        );
    }
}

fn image(path: &Path, size: u64) {
    fs::File::create(path)
        .expect("image")
        .set_len(size)
        .expect("size image");
}

/// `dd` through the protected device, bypassing the page cache.
fn dd(dev: &Path, seek_mib: u64, count_mib: u64) {
    run_ok(
        Command::new("dd")
            .arg("if=/dev/urandom")
            .arg(format!("of={}", dev.display()))
            .args(["bs=1M", "oflag=direct", "status=none"])
            .arg(format!("seek={seek_mib}"))
            .arg(format!("count={count_mib}")),
    );
}

/// Waits until the agent's status reports an error (the target refused it); the agent must
/// still be running and unconnected.
fn wait_error(agent: &Agent, limit: Duration) -> Status {
    let t0 = Instant::now();
    loop {
        let st = agent.status();
        if st.last_error.is_some() {
            assert!(!st.connected, "{st:?}");
            return st;
        }
        assert!(
            t0.elapsed() < limit,
            "no error reported within {limit:?}: {st:?}\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The groups the (stopped) target's store holds.
fn groups(data_dir: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["inspect", "--json", "--data-dir"])
            .arg(data_dir),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect json");
    v["groups"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn tls_args(ca: &Path, cert_dir: &Path, name: &str) -> Vec<String> {
    let f = |p: PathBuf| p.to_str().unwrap().to_string();
    vec![
        "--tls-ca".into(),
        f(ca.join("ca.crt")),
        "--tls-cert".into(),
        f(cert_dir.join(format!("agents/{name}.crt"))),
        "--tls-key".into(),
        f(cert_dir.join(format!("agents/{name}.key"))),
    ]
}

/// Data written through the protected device reaches the target over mutual TLS, byte for byte.
#[test]
fn replicates_over_mutual_tls() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let site = w.join("ca");
    ca(&site, &["test-agent"]);
    let img = w.join("disk.img");
    image(&img, 32 << 20);
    let mut mtd = Mtd::start_tls(w, &site);
    let target = mtd.target();
    assert!(target.starts_with("tcp:127.0.0.1:"), "{target}");
    let mut agent = Agent::start(
        w,
        "g1",
        &[("d0", &img)],
        &target,
        &["--tls-dir", site.to_str().unwrap()],
    );
    let dev = agent.link("d0");
    dd(&dev, 1, 4);
    dd(&dev, 20, 3);
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert!(st.last_seq > 0, "{st:?}");
    assert_eq!(st.target, target);
    dd(&dev, 10, 2);
    agent.wait_caught_up(Duration::from_secs(60));
    agent.stop();
    mtd.stop();
    let log = mtd.log_text();
    assert!(
        log.contains("TLS session authenticated"),
        "the target saw a TLS session:\n{log}"
    );
    mtd.stop_and_check_latest("g1", "d0", &img);
}

/// Certificates from another CA on either side: the agent keeps running (capturing, retrying),
/// says why in its status, and the target never gets the group.
#[test]
fn certificates_from_another_ca_are_refused() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let site = w.join("ca");
    let rogue = w.join("rogue");
    ca(&site, &["test-agent"]);
    ca(&rogue, &["test-agent"]);
    let mut mtd = Mtd::start_tls(w, &site);

    // The agent's certificate is from another CA: the target refuses it.
    let w1 = w.join("agent-cert");
    fs::create_dir(&w1).unwrap();
    let img1 = w1.join("disk.img");
    image(&img1, 8 << 20);
    let args = tls_args(&site, &rogue, "test-agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a1 = Agent::start(&w1, "g-rogue-agent", &[("d0", &img1)], &mtd.target(), &args);
    let st = wait_error(&a1, Duration::from_secs(20));
    let e = st.last_error.unwrap();
    eprintln!("agent certificate from another CA: {e}");
    assert!(e.contains("TLS"), "{e}");
    assert!(e.contains(&mtd.target()), "{e}");

    // The target's certificate is from a CA the agent does not trust.
    let w2 = w.join("server-cert");
    fs::create_dir(&w2).unwrap();
    let img2 = w2.join("disk.img");
    image(&img2, 8 << 20);
    let args = tls_args(&rogue, &rogue, "test-agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a2 = Agent::start(
        &w2,
        "g-rogue-server",
        &[("d0", &img2)],
        &mtd.target(),
        &args,
    );
    let st = wait_error(&a2, Duration::from_secs(20));
    let e = st.last_error.unwrap();
    // (Both CAs have the same name: rustls finds the issuer by name and then the signature
    // does not verify, BadSignature; a differently named CA gives UnknownIssuer.)
    assert!(
        e.contains("TLS handshake: invalid peer certificate") && e.contains("rogue/ca.crt"),
        "{e}"
    );

    // Both keep running (and retrying) while refused.
    std::thread::sleep(Duration::from_millis(500));
    for a in [&a1, &a2] {
        let st = a.status();
        assert!(!st.connected && st.last_error.is_some(), "{st:?}");
    }
    drop(a1);
    drop(a2);
    mtd.stop();
    assert!(
        mtd.log_text().contains("TLS handshake refused"),
        "{}",
        mtd.log_text()
    );
    let gs = groups(&mtd.data_dir);
    assert!(gs.is_empty(), "the target got groups: {gs:?}");
}

/// An agent whose name is not its certificate's common name is refused by the target.
#[test]
fn agent_name_must_match_the_certificate() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let site = w.join("ca");
    ca(&site, &["other-agent"]);
    let mut mtd = Mtd::start_tls(w, &site);
    let img = w.join("disk.img");
    image(&img, 8 << 20);
    // The harness names the agent test-agent; the certificate is other-agent's.
    let args = tls_args(&site, &site, "other-agent");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start(w, "g-named", &[("d0", &img)], &mtd.target(), &args);
    let st = wait_error(&agent, Duration::from_secs(20));
    let e = st.last_error.unwrap();
    eprintln!("agent name not the certificate's: {e}");
    assert!(e.to_lowercase().contains("forbidden"), "{e}");
    assert!(e.contains("other-agent"), "{e}");
    drop(agent);
    mtd.stop();
    let gs = groups(&mtd.data_dir);
    assert!(gs.is_empty(), "the target got groups: {gs:?}");
}

/// Transport settings that would be insecure or cannot work are refused at start, clearly, before
/// anything is mounted. (No root needed: these fail before the agent touches the system.)
#[test]
fn insecure_transports_are_refused_at_start() {
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    image(&img, 1 << 20);
    let state = w.join("state");
    fs::create_dir(&state).unwrap();
    let mnt = w.join("mnt");
    let site = w.join("ca");
    ca(&site, &["test-agent"]);
    let run_agent = |target: &str, extra: &[&str]| {
        let out = Command::new(bin("rewind-agent"))
            .arg("run")
            .args([
                "--group",
                "g",
                "--agent-name",
                "test-agent",
                "--target",
                target,
            ])
            .arg("--disk")
            .arg(format!("d0={}", img.display()))
            .arg("--state-dir")
            .arg(&state)
            .arg("--mount-dir")
            .arg(&mnt)
            .arg("--links-dir")
            .arg(w.join("links"))
            .args(extra)
            .output()
            .expect("run rewind-agent");
        assert!(!out.status.success(), "{target} {extra:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let site_dir = site.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        // Plain TCP without --insecure, even to loopback.
        ("tcp:127.0.0.1:7000", vec![], vec!["TLS", "--insecure"]),
        // Remote without TLS.
        ("tcp:192.0.2.1:7000", vec![], vec!["TLS", "--tls-dir"]),
        // --insecure only on loopback.
        (
            "tcp:192.0.2.1:7000",
            vec!["--insecure"],
            vec!["not a loopback address"],
        ),
        // A missing file is named.
        (
            "tcp:127.0.0.1:7000",
            vec!["--tls-dir", "/nonexistent/tls"],
            vec!["/nonexistent/tls/ca.crt"],
        ),
        (
            "tcp:127.0.0.1:7000",
            vec!["--tls-dir", site_dir, "--tls-key", "/nonexistent/a.key"],
            vec!["/nonexistent/a.key"],
        ),
        // A certificate file that is not one.
        (
            "tcp:127.0.0.1:7000",
            vec!["--tls-dir", site_dir, "--tls-cert", "/etc/hostname"],
            vec!["/etc/hostname", "certificate"],
        ),
        // Half the explicit files.
        (
            "tcp:127.0.0.1:7000",
            vec!["--tls-ca", "/x/ca.crt"],
            vec!["--tls-cert"],
        ),
        // TLS with a unix socket, TLS with --insecure.
        (
            "unix:/nonexistent.sock",
            vec!["--tls-dir", site_dir],
            vec!["never TLS"],
        ),
        (
            "tcp:127.0.0.1:7000",
            vec!["--tls-dir", site_dir, "--insecure"],
            vec!["choose one"],
        ),
    ];
    for (target, extra, want) in cases {
        let err = run_agent(target, &extra);
        for wnt in want {
            assert!(
                err.contains(wnt),
                "{target} {extra:?}: error {err:?} should mention {wnt:?}"
            );
        }
    }
    assert!(!mnt.exists(), "nothing mounted or made for a refused run");
}
