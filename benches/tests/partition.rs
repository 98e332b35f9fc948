//! A partition that neither side sees closed: the target runs in its own network namespace,
//! joined to the agent's by a veth pair limited by `tc tbf`, over mutual TLS. Both veth ends go
//! down for longer than the keepalive and dead-peer timeouts (no FIN, no RST: packets vanish)
//! while the workload writes; both sides must notice on their own, and once the link is back
//! the agent reconnects, resends, and latest equals the source.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use rewind_benches::harness::*;

/// The agent gives a silent peer up after about 30 s (keepalive, TCP_USER_TIMEOUT), the target
/// after about 25 s (keepalive): the partition lasts longer than both.
const PARTITION: Duration = Duration::from_secs(45);

fn session_ends(mtd: &Mtd) -> usize {
    mtd.log_text()
        .lines()
        .filter(|l| l.contains("closing session") || l.contains("session closed"))
        .count()
}

#[test]
fn silent_partition_is_detected_and_heals() {
    if !can_run()
        || !have_tools(
            "silent_partition_is_detected_and_heals",
            &["ip", "tc", "nbdcopy", "cmp"],
        )
    {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let ns = NetNs::new(0, "40mbit");
    let site = w.join("ca");
    run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["ca", "init", "--dir"])
            .arg(&site)
            .args(["--name", &ns.inner_ip]),
    );
    run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["ca", "issue", "--agent", "test-agent", "--dir"])
            .arg(&site),
    );
    let listen = format!("{}:0", ns.inner_ip);
    let site_s = site.to_str().unwrap().to_string();
    // The daemon is inside the namespace; its unix sockets (control, NBD) stay reachable.
    let mut mtd = ns.within(|| Mtd::start_with(w, &["--tls-dir", &site_s, "--listen", &listen]));
    let addr = mtd
        .ready_lines()
        .into_iter()
        .find(|l| l.starts_with(&format!("{}:", ns.inner_ip)))
        .expect("the daemon listens on the namespace's address");
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
    let target = format!("tcp:{addr}");
    let mut agent = Agent::start(w, "np", &[("d0", &img)], &target, &["--tls-dir", &site_s]);
    let dev = agent.link("d0");
    let writer = Writer::start(&dev, 64 << 20, 1, Duration::from_millis(2));
    std::thread::sleep(Duration::from_secs(2));
    writer.stop();
    agent.wait_caught_up(Duration::from_secs(120));

    let ends0 = session_ends(&mtd);
    ns.partition();
    let t0 = Instant::now();
    // Writes while the link is gone: the agent has unacknowledged data in flight.
    let writer = Writer::start(&dev, 64 << 20, 2, Duration::from_millis(2));
    std::thread::sleep(Duration::from_secs(3));
    writer.stop();
    let mut agent_saw = None;
    let mut target_saw = None;
    // Keepalive timing stretches on a loaded machine: hold the partition until both sides saw
    // it, up to twice the planned length.
    while t0.elapsed() < PARTITION
        || ((agent_saw.is_none() || target_saw.is_none()) && t0.elapsed() < 2 * PARTITION)
    {
        if agent_saw.is_none() && !read_status(&agent.state).is_ok_and(|s| s.connected) {
            agent_saw = Some(t0.elapsed());
        }
        if target_saw.is_none() && session_ends(&mtd) > ends0 {
            target_saw = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("partition: agent saw it after {agent_saw:?}, target after {target_saw:?}");
    let st = agent.status();
    assert!(
        agent_saw.is_some() && st.last_seq > st.acked_seq,
        "the agent noticed the silent peer and holds what was not acknowledged: {st:?}\n{}",
        agent.log_text()
    );
    assert!(
        target_saw.is_some(),
        "the target ended the silent session on its own:\n{}",
        mtd.log_tail(30)
    );
    ns.heal();
    let healed = Instant::now();
    let st = agent.wait_caught_up(Duration::from_secs(180));
    eprintln!(
        "partition: caught up {:?} after the heal: {st:?}",
        healed.elapsed()
    );
    assert!(
        mtd.latest_equals("np", "d0", &img, &w.join("latest.img")),
        "latest equals the source after the partition"
    );
    agent.stop();
    mtd.stop_and_check_latest("np", "d0", &img);
    drop(ns);
}
