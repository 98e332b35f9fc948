//! Relays replacing each other, end to end: one master target, two relays, a real agent that
//! lists relay A then relay B. Relay A acknowledges batches it cannot forward (the target is
//! down) and is killed -9 with them in its cache; the agent moves to relay B, resends the
//! regions its dirty-region map still holds (the target kept all it had: no compare of every
//! region) and the replica converges byte for byte with the source. Relay A, started again on
//! its old cache (which reaches seqs past everything B sent, so it would have batches to
//! forward), is refused by the target (its session is of an older epoch: counted as a
//! stale-epoch refusal) and the replica still equals the source. When B dies in turn, the agent goes back to A, which drops
//! its stale cache, and the replica still converges. An agent whose epoch went back is refused
//! by A, moves past the epoch A names, and goes on.

mod common;

use std::time::Duration;

use common::relay::{image, target_durable, wait_until, Relay};
use common::*;

const LONG: Duration = Duration::from_secs(120);

/// `rewind_frames_rejected_total{reason="REASON"}` on the target's metrics page.
fn rejected(mtd: &Mtd, reason: &str) -> u64 {
    let body = http::get(&mtd.metrics_addr(), "/metrics").1;
    let key = format!("rewind_frames_rejected_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the target's metrics"))
}

#[test]
fn a_dead_relays_acknowledged_batches_come_through_the_next_and_its_stale_cache_is_refused() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let src = w.join("src.img");
    image(&src, 64);
    let mut mtd = Mtd::start_with(w, &["--metrics-listen", "127.0.0.1:0"]);
    let (dir_a, dir_b) = (w.join("relay-a"), w.join("relay-b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut relay_a = Relay::start(&dir_a, &mtd.target(), "1GiB");
    let mut relay_b = Relay::start(&dir_b, &mtd.target(), "1GiB");
    let (a, b) = (relay_a.target(), relay_b.target());
    let mut agent = Agent::start(w, "g1", &[("d0", &src)], &a, &["--target", &b]);
    // (By path: relay A is killed and restarted while this is in use.)
    let (log_a, log_b) = (relay_a.log.clone(), relay_b.log.clone());
    let log_agent = agent.log.clone();
    let logs = || {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- agent\n{}\n--- relay A\n{}\n--- relay B\n{}",
            read(&log_agent),
            read(&log_a),
            read(&log_b)
        )
    };
    let dev = agent.link("d0");

    // Through relay A, while everything is up.
    write_random_mib(&dev, 0, 8, 1);
    let st = agent.wait_caught_up(LONG);
    assert_eq!(st.target, a, "the first target listed is used first");
    wait_until(
        "the target to hold what relay A acknowledged",
        LONG,
        || target_durable(&mtd, "g1") >= st.last_seq,
        &logs,
    );
    let before_outage = target_durable(&mtd, "g1");

    // The target goes down: relay A acknowledges what it cannot forward. Regions written
    // twice make A's cache hold more seqs than the resend of those regions takes through B.
    mtd.stop();
    write_random_mib(&dev, 16, 8, 2);
    write_random_mib(&dev, 0, 2, 3);
    write_random_mib(&dev, 16, 8, 8);
    let held = agent.wait_status(LONG, |s| {
        s.caught_up && s.target == a && s.acked_seq > before_outage
    });
    assert!(
        relay_a.cached_bytes() > 0,
        "relay A holds acknowledged batches\n{}",
        logs()
    );
    assert_eq!(
        held.target_durable_seq,
        Some(before_outage),
        "the agent knows the target does not have them"
    );
    // The agent clears acknowledged regions a few seconds after their ACK: not these, which
    // only relay A holds (they are how the agent resends them if A never forwards them).
    std::thread::sleep(Duration::from_secs(4));
    let later = agent.fresh_status();
    assert!(
        later.dirty_regions > 0,
        "the regions stay dirty until the target holds them: {later:?}"
    );

    assert_eq!(
        later.compared_regions, 0,
        "an initial sync compares nothing"
    );

    // Relay A dies with them; the target comes back; the agent moves to relay B.
    relay_a.kill9();
    mtd.restart();
    let moved = agent.wait_status(LONG, |s| s.target == b && s.connected);
    assert_eq!(moved.target, b);
    assert!(
        agent.log_text().contains("moving to the next one"),
        "the move is logged\n{}",
        agent.log_text()
    );
    // Everything comes through B: the agent resends what A held from the source disk. (No
    // new writes until A is back: B's stream must stay shorter than A's cache, see below.)
    let done = agent.wait_status(LONG, |s| {
        s.caught_up
            && s.pinned_regions == 0
            && s.target_durable_seq == Some(s.acked_seq)
            && s.acked_seq == s.last_seq
    });
    wait_until(
        "the target to hold everything sent through B",
        LONG,
        || target_durable(&mtd, "g1") >= done.last_seq,
        &logs,
    );
    let scratch = w.join("check.img");
    assert!(
        mtd.latest_equals("g1", "d0", &src, &scratch),
        "the replica equals the source after the move\n{}",
        logs()
    );
    // B's durable seq was not below what the target held: resending the dirty regions was
    // enough, and no region was compared with the target's hashes.
    assert_eq!(
        done.last_loss_repair.as_deref(),
        Some("resend"),
        "{done:?}\n{}",
        logs()
    );
    assert_eq!(done.compared_regions, 0, "no HASHES compare: {done:?}");
    assert!(
        done.resent_regions > 0 && done.resent_regions <= later.dirty_regions,
        "only the dirty regions ({}) were resent: {done:?}",
        later.dirty_regions
    );
    eprintln!(
        "failover to B: {} of {} dirty regions resent (disk: 64 regions), none compared",
        done.resent_regions, later.dirty_regions
    );
    assert!(
        agent
            .log_text()
            .contains("the dirty regions will be resent"),
        "the path taken is logged\n{}",
        agent.log_text()
    );

    // A's cache reaches past everything B sent: seqs the target has not had through B. Without
    // the epoch, A's forwarder would send its batches after B's last seq as the next ones, and
    // the replica would go back to what A held.
    eprintln!(
        "relay A's cache reaches seq {}, B's stream seq {}",
        held.acked_seq, done.last_seq
    );
    assert!(
        held.acked_seq > done.last_seq,
        "relay A's cache (to seq {}) reaches beyond B's stream (to seq {})",
        held.acked_seq,
        done.last_seq
    );

    // Relay A comes back on its old cache: the target refuses its stale session.
    let refused_before = rejected(&mtd, "stale_epoch");
    relay_a.restart();
    wait_until(
        "the target to refuse relay A's stale session",
        LONG,
        || rejected(&mtd, "stale_epoch") > refused_before,
        &logs,
    );
    let text = relay_a.log_text();
    assert!(
        text.contains("epoch 1 is older than epoch 2"),
        "relay A is told why\n{text}"
    );
    // Nothing it held was applied: the replica still equals the source, and B still feeds it.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        mtd.latest_equals("g1", "d0", &src, &scratch),
        "relay A's stale cache did not reach the replica\n{}",
        logs()
    );
    write_random_mib(&dev, 40, 4, 4);
    write_random_mib(&dev, 8, 2, 5);
    let last = agent.wait_status(LONG, |s| {
        s.caught_up && s.target == b && s.target_durable_seq == Some(s.last_seq)
    });
    wait_until(
        "the target to hold the last writes",
        LONG,
        || target_durable(&mtd, "g1") >= last.last_seq,
        &logs,
    );

    // Relay B dies in turn: the agent goes back to A with a newer epoch, and A drops the cache
    // it kept (the target would refuse it) instead of forwarding it.
    relay_b.kill9();
    agent.wait_status(LONG, |s| s.target == a && s.connected);
    write_random_mib(&dev, 50, 2, 6);
    let back = agent.wait_status(LONG, |s| {
        s.caught_up && s.target == a && s.target_durable_seq == Some(s.last_seq)
    });
    wait_until(
        "the target to hold what came back through A",
        LONG,
        || target_durable(&mtd, "g1") >= back.last_seq,
        &logs,
    );
    let text = relay_a.log_text();
    assert!(
        text.contains("the agent moved on since this cache was filled: dropping it"),
        "{text}"
    );

    // The agent's epoch goes back (its state directory restored from an older copy, say): A
    // refuses it as older than its cache's, the agent moves past that epoch, and replication
    // goes on through A.
    agent.stop();
    std::fs::remove_file(agent.state.join("g1.epoch")).unwrap();
    let agent = Agent::start(w, "g1", &[("d0", &src)], &a, &["--target", &b]);
    let dev = agent.link("d0");
    write_random_mib(&dev, 40, 2, 7);
    let again = agent.wait_status(LONG, |s| {
        s.caught_up && s.target == a && s.target_durable_seq == Some(s.last_seq)
    });
    wait_until(
        "the target to hold what the agent sent after its epoch went back",
        LONG,
        || target_durable(&mtd, "g1") >= again.last_seq,
        &logs,
    );
    let text = agent.log_text();
    assert!(text.contains("moving past it"), "{text}");
    drop(agent);
    drop(relay_a);
    drop(relay_b);
    mtd.stop_and_check_latest("g1", "d0", &src);
}
