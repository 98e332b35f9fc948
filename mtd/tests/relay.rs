//! The process server (`rewind-mtd relay`) end to end: a real agent (or the load generator) feeds
//! a real relay that forwards to a real master target, every one a process stopped by pid.
//! Replication through the relay converges byte for byte; kill -9 of the relay under load loses
//! nothing the agent saw acknowledged; with the target stopped the relay keeps acknowledging and
//! the target catches up after; a full cache pushes back without loss; a planned failover
//! through the relay loses nothing; a fenced agent is refused through the relay with the reason.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::refused_writer::RefusedWriter;
use common::relay::{image, target_durable, wait_until, Relay};
use common::*;

const LONG: Duration = Duration::from_secs(120);

/// The load generator's workload for the crash and outage tests.
fn workload(group: &str, seed: u64) -> Workload {
    Workload {
        group: group.into(),
        disks: vec!["sda:32MiB".into()],
        seed,
        pattern: "random",
        record_size: "4KiB",
        payload: "compressible",
    }
}

fn loadgen(wl: &Workload, target: &str, state: &Path, rate: &str) -> Proc {
    Proc::spawn(
        wl.run_cmd(target, "1TiB")
            .args([
                "--reconnect",
                "--reconnect-timeout",
                "120s",
                "--batch-bytes",
                "256KiB",
                "--rate",
                rate,
                "--state",
            ])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Stops the load generator, waits until the target holds everything it saw acknowledged, stops
/// the target and checks the replica at that seq against the workload's model.
fn stop_and_verify(
    mut lg: Proc,
    state: &Path,
    wl: &Workload,
    mtd: &mut Mtd,
    relay: &Relay,
    work: &Path,
) {
    drop(lg.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    }));
    let acked = acked(state);
    assert!(acked > 0, "nothing acknowledged");
    wait_until(
        &format!("the target to hold seq {acked}"),
        LONG,
        || target_durable(mtd, &wl.group) >= acked,
        &|| relay.log_text(),
    );
    mtd.stop();
    let img = work.join("check.img");
    assert_ok(
        &dump(
            &mtd.data_dir,
            &wl.group,
            "sda",
            &format!("seq:{acked}"),
            &img,
        ),
        "dump",
    );
    assert_ok(
        &wl.verify(&img, 0, acked),
        &format!("verify at seq {acked}"),
    );
}

#[test]
fn replication_through_the_relay_converges_byte_for_byte() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let src = w.join("src.img");
    image(&src, 64);
    let mut mtd = Mtd::start(w);
    // Without deduplication: frames go upstream as the agent made them (bytes counted below).
    let relay = Relay::start_flags(w, &mtd.target(), "1GiB", &["--dedup-window", "0"]);
    let agent = Agent::start(w, "g1", &[("d0", &src)], &relay.target(), &[]);
    let dev = agent.link("d0");
    write_random_mib(&dev, 0, 24, 7);
    write_random_mib(&dev, 40, 8, 8);
    let st = agent.wait_caught_up(LONG);
    wait_until(
        "the target to hold what the relay acknowledged",
        LONG,
        || target_durable(&mtd, "g1") >= st.last_seq,
        &|| relay.log_text(),
    );
    // The agent learns both: its ACKs (the relay's cache) and what the target holds.
    let both = agent.wait_status(LONG, |s| {
        s.acked_seq == st.last_seq && s.target_durable_seq == Some(st.last_seq)
    });
    assert!(both.caught_up, "{both:?}");
    let out = run_ok(
        Command::new(bin("rewind-agent"))
            .args(["status", "--state-dir"])
            .arg(&agent.state),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "through a relay: {0} durable in the relay's cache, {0} durable at the master target",
            st.last_seq
        )),
        "{text}"
    );
    // The relay forwarded every byte it took in (frames restamped, not re-encoded).
    assert!(relay.metric("rewind_relay_bytes_in_total") > 24 << 20 >> 4);
    assert!(
        relay.metric("rewind_relay_bytes_out_total") >= relay.metric("rewind_relay_bytes_in_total")
    );
    drop(agent);
    mtd.stop_and_check_latest("g1", "d0", &src);
}

#[test]
fn kill9_of_the_relay_under_load_loses_nothing_acknowledged() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let wl = workload("crash", 11);
    let mut mtd = Mtd::start(w);
    let mut relay = Relay::start(w, &mtd.target(), "1GiB");
    let state = w.join("loadgen.state");
    let lg = loadgen(&wl, &relay.target(), &state, "16MiB");
    wait_until("a first ack", LONG, || acked(&state) > 0, &|| {
        relay.log_text()
    });
    let mut before = Vec::new();
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        relay.kill9();
        let a = acked(&state);
        before.push(a);
        relay.restart();
        // Nothing the relay acknowledged is gone: its WELCOME to the reconnecting load generator
        // resumes at or after it (the load generator refuses to go back), and the target gets it.
        wait_until(
            &format!("round {round}: the target to hold seq {a}"),
            LONG,
            || target_durable(&mtd, "crash") >= a,
            &|| relay.log_text(),
        );
    }
    let last = *before.last().unwrap();
    wait_until(
        "progress after the last restart",
        LONG,
        || acked(&state) > last,
        &|| relay.log_text(),
    );
    assert_eq!(relay.log_text().matches("relay ready").count(), 6);
    stop_and_verify(lg, &state, &wl, &mut mtd, &relay, w);
}

/// A master target in `w`, a relay in front of it with a cache of `cache_size`, and the load
/// generator sending `wl` through the relay at `rate` (its state in `w/loadgen.state`), once the
/// target holds a first batch of it: (the target, the relay, the load generator, its state file).
fn fed_through_a_relay(
    w: &Path,
    wl: &Workload,
    cache_size: &str,
    rate: &str,
) -> (Mtd, Relay, Proc, PathBuf) {
    let mtd = Mtd::start(w);
    let relay = Relay::start(w, &mtd.target(), cache_size);
    let state = w.join("loadgen.state");
    let lg = loadgen(wl, &relay.target(), &state, rate);
    wait_until(
        "a first ack",
        LONG,
        || target_durable(&mtd, &wl.group) > 0,
        &|| relay.log_text(),
    );
    (mtd, relay, lg, state)
}

#[test]
fn with_the_target_stopped_the_relay_keeps_acknowledging_then_the_target_catches_up() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let wl = workload("outage", 12);
    let (mut mtd, relay, lg, state) = fed_through_a_relay(w, &wl, "1GiB", "8MiB");
    mtd.stop();
    let down = acked(&state);
    std::thread::sleep(Duration::from_secs(3));
    let during = acked(&state);
    assert!(
        during > down,
        "the relay must keep acknowledging with the target down ({down} -> {during})\n{}",
        relay.log_text()
    );
    assert!(relay.cached_bytes() > 0, "the batches wait in the cache");
    mtd.restart();
    stop_and_verify(lg, &state, &wl, &mut mtd, &relay, w);
    // Acknowledged by the target, the cache is freed (all but the segment being written).
    assert!(relay.cached_bytes() <= 64 << 20, "{}", relay.cached_bytes());
}

#[test]
fn a_full_cache_pushes_back_without_loss() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let wl = workload("full", 13);
    let (mut mtd, relay, lg, state) = fed_through_a_relay(w, &wl, "4MiB", "16MiB");
    mtd.stop();
    // The cache fills, then the relay stops acknowledging.
    wait_until(
        "the cache to fill",
        LONG,
        || relay.metric("rewind_relay_cache_full_total") > 0,
        &|| relay.log_text(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let stalled = acked(&state);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        acked(&state),
        stalled,
        "a full cache must stop acknowledging"
    );
    // Never more than the limit plus one frame being taken in.
    assert!(
        relay.cached_bytes() <= (4 << 20) + (1 << 20),
        "{}",
        relay.cached_bytes()
    );
    mtd.restart();
    wait_until(
        "acks again once the target drains the cache",
        LONG,
        || acked(&state) > stalled,
        &|| relay.log_text(),
    );
    stop_and_verify(lg, &state, &wl, &mut mtd, &relay, w);
}

#[test]
fn a_planned_failover_through_the_relay_loses_nothing_and_fences_the_agent() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let mut mtd = site(w, "dr");
    let relay = Relay::start(w, &mtd.target(), "1GiB");
    let src = w.join("src.img");
    image(&src, 64);
    let mut agent = Agent::start(w, "db", &[("data", &src)], &relay.target(), &[]);
    let dev = agent.link("data");
    write_random_mib(&dev, 0, 16, 1);
    agent.wait_caught_up(LONG);

    let writer = RefusedWriter::start(&dev);
    std::thread::sleep(Duration::from_millis(500));
    let r = mtd.rewind_json(&["failover", "planned", "db"]);
    let (writes, err) = writer.stop();
    assert!(writes > 0);
    err.expect("writes after the drain must be refused");
    assert_eq!(r["promotion"]["kind"], "planned");
    // Zero data loss: the promoted disk is the source disk, byte for byte.
    assert_same(&live_loop(&r), &src);
    // The fence reaches the agent through the relay, with the target's reason.
    wait_until(
        "the agent to learn it is fenced",
        Duration::from_secs(60),
        || agent.log_text().contains("fenced"),
        &|| agent.log_text(),
    );
    agent.kill9();
    drop(agent);
    // An agent of the fenced generation that comes back through the relay (a fresh state dir:
    // it does not know locally that it was fenced) is refused with the target's reason, and
    // stops for good (it stays up, refusing writes, as fenced agents do).
    let again = w.join("again");
    fs::create_dir_all(&again).unwrap();
    let back = Agent::start(&again, "db", &[("data", &src)], &relay.target(), &[]);
    let st = back.wait_status(Duration::from_secs(60), |s| s.fenced.is_some());
    let why = st.fenced.unwrap();
    assert!(
        why.contains("failed over") && why.contains("generation 2"),
        "{why}"
    );
    drop(back);
    mtd.stop();
}

fn mtd_cmd(args: &[&str], dir: &Path) {
    run_ok(
        Command::new(bin("rewind-mtd"))
            .args(args)
            .arg("--dir")
            .arg(dir),
    );
}

/// A site CA with agent certificates, and relay `relay`'s directory: its relay certificate and
/// a server certificate for its agents on 127.0.0.1.
fn site_ca(site: &Path, agents: &[&str], relay: &str) -> PathBuf {
    mtd_cmd(&["ca", "init"], site);
    for a in agents {
        mtd_cmd(&["ca", "issue", "--agent", a], site);
    }
    let dir = site.join("relays").join(relay);
    mtd_cmd(&["ca", "issue", "--relay", relay], site);
    let agents_name = format!("{relay}-agents");
    let out = dir.to_str().unwrap().to_string();
    mtd_cmd(
        &[
            "ca",
            "issue",
            "--server",
            &agents_name,
            "--host",
            "127.0.0.1",
            "--out",
            &out,
        ],
        site,
    );
    dir
}

/// Over mutual TLS at both hops: the relay accepts only agents whose certificate names the
/// HELLO's agent, and a target accepts the relay only when it trusts it by name; then data
/// replicates through it.
#[test]
fn over_tls_a_trusted_relay_speaks_for_verified_agents_only() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let site = w.join("ca");
    let relay_dir = site_ca(&site, &["test-agent", "other-agent"], "r1");
    let src = w.join("src.img");
    image(&src, 32);
    let site_s = site.to_str().unwrap();

    // A target that does not trust r1: the agent is refused, with the reason.
    let untrusting = w.join("untrusting");
    fs::create_dir_all(&untrusting).unwrap();
    let mut mtd = Mtd::start_tls(&untrusting, &site);
    let relay = Relay::start_with(
        w,
        &mtd.target(),
        "1GiB",
        "tcp:127.0.0.1:0",
        &["--tls-dir", relay_dir.to_str().unwrap()],
    );
    let agent = Agent::start(
        w,
        "g1",
        &[("d0", &src)],
        &relay.target(),
        &["--tls-dir", site_s],
    );
    wait_until(
        "the agent to be told the relay is not trusted",
        LONG,
        || {
            read_status(&agent.state)
                .ok()
                .and_then(|s| s.last_error)
                .is_some_and(|e| e.contains("not trusted") && e.contains("--trusted-relay r1"))
        },
        &|| format!("{}\n{}", agent.log_text(), relay.log_text()),
    );
    drop(agent);
    drop(relay);
    mtd.stop();
    drop(mtd);

    // A target that trusts r1: replication goes through, byte for byte.
    let trusting = w.join("trusting");
    fs::create_dir_all(&trusting).unwrap();
    let mut mtd = Mtd::start_tls_with(&trusting, &site, &["--trusted-relay", "r1"]);
    let cache = w.join("relay-cache");
    let _ = fs::remove_dir_all(&cache);
    let relay = Relay::start_with(
        w,
        &mtd.target(),
        "1GiB",
        "tcp:127.0.0.1:0",
        &["--tls-dir", relay_dir.to_str().unwrap()],
    );
    // An agent whose certificate is another agent's name is refused at the relay.
    let other = w.join("other");
    fs::create_dir_all(&other).unwrap();
    let f = |p: PathBuf| p.to_str().unwrap().to_string();
    let forged = [
        "--tls-ca".to_string(),
        f(site.join("ca.crt")),
        "--tls-cert".into(),
        f(site.join("agents/other-agent.crt")),
        "--tls-key".into(),
        f(site.join("agents/other-agent.key")),
    ];
    let forged: Vec<&str> = forged.iter().map(String::as_str).collect();
    let rogue = Agent::start(&other, "g1", &[("d0", &src)], &relay.target(), &forged);
    wait_until(
        "the relay to refuse a certificate of another name",
        LONG,
        || {
            read_status(&rogue.state)
                .ok()
                .and_then(|s| s.last_error)
                .is_some_and(|e| e.contains("certificate is for agent other-agent"))
        },
        &|| rogue.log_text(),
    );
    drop(rogue);
    let agent = Agent::start(
        w,
        "g1",
        &[("d0", &src)],
        &relay.target(),
        &["--tls-dir", site_s],
    );
    let dev = agent.link("d0");
    write_random_mib(&dev, 0, 8, 21);
    let st = agent.wait_caught_up(LONG);
    wait_until(
        "the target to hold what the relay acknowledged",
        LONG,
        || target_durable(&mtd, "g1") >= st.last_seq,
        &|| relay.log_text(),
    );
    drop(agent);
    mtd.stop_and_check_latest("g1", "d0", &src);
}

/// Blocks the relay sent before go upstream as references (the dedup window, on by default):
/// the same 4 MiB of random data written at three places costs the WAN about one copy, and the
/// replica, rebuilt by the target from the references, is exactly the source.
#[test]
fn repeated_blocks_go_upstream_as_references_and_the_replica_is_exact() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let src = w.join("src.img");
    image(&src, 64);
    let mut mtd = Mtd::start(w);
    let relay = Relay::start(w, &mtd.target(), "1GiB");
    let agent = Agent::start(w, "dd", &[("d0", &src)], &relay.target(), &[]);
    let dev = agent.link("d0");
    let settle = |what: &str| {
        let st = agent.wait_caught_up(LONG);
        wait_until(
            &format!("the target to hold {what}"),
            LONG,
            || target_durable(&mtd, "dd") >= st.last_seq,
            &|| relay.log_text(),
        );
    };
    write_random_mib(&dev, 0, 4, 21);
    settle("the first copy");
    let (in0, out0) = (
        relay.metric("rewind_relay_bytes_in_total"),
        relay.metric("rewind_relay_bytes_out_total"),
    );
    write_random_mib(&dev, 16, 4, 21);
    write_random_mib(&dev, 40, 4, 21);
    settle("the copies");
    let (bytes_in, bytes_out) = (
        relay.metric("rewind_relay_bytes_in_total") - in0,
        relay.metric("rewind_relay_bytes_out_total") - out0,
    );
    let refs = relay.metric("rewind_relay_dedup_blocks_total");
    eprintln!("copies: relay bytes in {bytes_in}, out {bytes_out}, {refs} blocks as references");
    // 2 x 1024 blocks repeat what was sent; random data leaves zstd nothing to find.
    assert!(
        refs >= 2 * 1024,
        "{refs} blocks deduplicated\n{}",
        relay.log_text()
    );
    assert!(bytes_in > 8 << 20, "in {bytes_in}");
    assert!(bytes_out < bytes_in / 20, "in {bytes_in}, out {bytes_out}");
    drop(agent);
    mtd.stop_and_check_latest("dd", "d0", &src);
}

/// With `--recompress-level`, the relay sends the target fewer bytes than it took in (the
/// agent's fast level 1 compressed again at 19), and the replica is still exactly the model.
#[test]
fn recompressed_upstream_sends_fewer_bytes_and_the_replica_is_exact() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let wl = workload("squeeze", 14);
    let mut mtd = Mtd::start(w);
    let relay = Relay::start_flags(w, &mtd.target(), "1GiB", &["--recompress-level", "19"]);
    let state = w.join("loadgen.state");
    let mut lg = Proc::spawn(
        wl.run_cmd(&relay.target(), "16MiB")
            .args(["--batch-bytes", "256KiB", "--state"])
            .arg(&state)
            .stdout(Stdio::null()),
    );
    assert!(lg.wait_timeout(LONG).success(), "{}", relay.log_text());
    let acked = acked(&state);
    wait_until(
        "the target to hold everything",
        LONG,
        || target_durable(&mtd, "squeeze") >= acked,
        &|| relay.log_text(),
    );
    let (bytes_in, bytes_out) = (
        relay.metric("rewind_relay_bytes_in_total"),
        relay.metric("rewind_relay_bytes_out_total"),
    );
    eprintln!(
        "relay bytes in {bytes_in}, out {bytes_out} (ratio {:.3})",
        bytes_out as f64 / bytes_in as f64
    );
    assert!(bytes_out < bytes_in, "in {bytes_in}, out {bytes_out}");
    mtd.stop();
    let img = w.join("check.img");
    assert_ok(
        &dump(
            &mtd.data_dir,
            "squeeze",
            "sda",
            &format!("seq:{acked}"),
            &img,
        ),
        "dump",
    );
    assert_ok(&wl.verify(&img, 0, acked), "verify");
}

/// A bandwidth limit paces what the relay sends the target, not what it takes from the agent:
/// with the upstream limited to 1 MiB/s the relay keeps acknowledging the load generator at its
/// own pace while the target falls behind, the relay's bytes out stay within the limit (plus the
/// second the bucket holds), and once the load stops the target catches up exactly.
#[test]
fn a_bandwidth_limit_paces_the_upstream_not_the_agent() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    // Random payload: compression cannot shrink what the limit is measured on.
    let wl = Workload {
        payload: "random",
        ..workload("paced", 15)
    };
    let mut mtd = Mtd::start(w);
    let relay = Relay::start_flags(w, &mtd.target(), "1GiB", &["--bandwidth", "*=1MiB/s"]);
    let state = w.join("loadgen.state");
    let lg = loadgen(&wl, &relay.target(), &state, "3MiB");
    wait_until("a first ack", LONG, || acked(&state) > 0, &|| {
        relay.log_text()
    });
    let t0 = Instant::now();
    let out0 = relay.metric("rewind_relay_bytes_out_total");
    std::thread::sleep(Duration::from_secs(5));
    let secs = t0.elapsed().as_secs_f64();
    let out = relay.metric("rewind_relay_bytes_out_total") - out0;
    let (relay_acked, target_has) = (acked(&state), target_durable(&mtd, "paced"));
    eprintln!(
        "in {secs:.1} s: {out} bytes out; relay acked seq {relay_acked}, target holds {target_has}"
    );
    let mib = (1u64 << 20) as f64;
    assert!(
        out as f64 <= (secs + 1.5) * mib,
        "{out} bytes out in {secs:.1} s over a 1 MiB/s limit\n{}",
        relay.log_text()
    );
    assert!(
        out as f64 >= (secs - 2.0) * mib * 0.8,
        "the limit is not used: {out} bytes out in {secs:.1} s"
    );
    assert!(
        relay_acked > target_has + 256,
        "the agent must not be held to the upstream's pace (relay acked {relay_acked}, target \
         holds {target_has})"
    );
    stop_and_verify(lg, &state, &wl, &mut mtd, &relay, w);
}
