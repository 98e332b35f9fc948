//! Drain and fencing end to end: a real `rewind-mtd serve` and `rewind-agent run`.
//!
//! - a drain under a running workload: the target's replica at the drain tag equals the source
//!   byte for byte, and the workload's later writes fail;
//! - a drain with no agent connected is refused with the advice, and changes nothing;
//! - fencing (by a hand-edited manifest, and by the fence route mid-session): the agent stops
//!   reconnecting, refuses writes, records the fence, and refuses to start again;
//! - `--generation`: a group created at generation 2 refuses a generation-1 agent.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const DISK_SIZE: u64 = 64 << 20;
const GROUP: &str = "g";

fn make_image(path: &Path) {
    let f = fs::File::create(path).expect("image");
    f.set_len(DISK_SIZE).expect("size image");
}

/// The seq in a drain answer `{"seq": N}`.
fn seq_of(body: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
    v["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {body}"))
}

/// A protected disk with some data on it, replicated and caught up.
fn protected(work: &Path, mtd: &Mtd, extra: &[&str]) -> (Agent, PathBuf) {
    let img = work.join("d0.img");
    make_image(&img);
    let agent = Agent::start(work, GROUP, &[("d0", &img)], &mtd.target(), extra);
    write_random_mib(&agent.link("d0"), 0, 4, 1);
    agent.wait_caught_up(Duration::from_secs(60));
    (agent, img)
}

/// Lines of the target's log that say an agent session started.
fn sessions_started(mtd: &Mtd) -> usize {
    mtd.log_text().matches("session started").count()
}

fn is_refused(e: &std::io::Error) -> bool {
    // The FUSE file answers EROFS; through the loop device the workload sees EIO.
    matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EIO))
}

/// A workload writes random MiBs with O_DIRECT while the target drains the group: the drain
/// returns the tag's seq; every later write fails; the target's replica at the tag equals the
/// source disk byte for byte; status shows the drain; a second drain of the same name is
/// idempotent (same seq).
#[test]
fn drain_under_a_workload_loses_nothing() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mut mtd = Mtd::start(work.path());
    let (mut agent, img) = protected(work.path(), &mtd, &[]);

    let dev = agent.link("d0");
    let stop = Arc::new(AtomicBool::new(false));
    let workload = {
        let stop = Arc::clone(&stop);
        let dev = dev.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = open_direct(&dev);
            let mut buf = rewind_linux::aligned::AlignedBuf::new(1 << 20);
            let mut rng = Rng::new(42);
            let mut ok = 0u64;
            while !stop.load(Ordering::SeqCst) {
                rng.fill(&mut buf);
                let at = (rng.next_u64() % (DISK_SIZE >> 20)) << 20;
                match f.write_all_at(&buf, at) {
                    Ok(()) => ok += 1,
                    Err(e) => return (ok, Some(e)),
                }
            }
            (ok, None)
        })
    };
    // Let the workload run a while before the drain.
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "pf-1", "timeout_secs": 120}"#,
    );
    assert_eq!(code, 200, "drain: {body}\n{}", mtd.log_text());
    let seq = seq_of(&body);
    // The source right after the drain: nothing may change it any more.
    let source = work.path().join("source-after-drain.img");
    fs::copy(&img, &source).expect("copy the source");

    let t0 = Instant::now();
    while !workload.is_finished() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, err) = workload.join().expect("workload thread");
    eprintln!("workload: {ok} MiB written before the drain, then {err:?}");
    assert!(ok > 0, "the workload wrote nothing before the drain");
    let err = err.expect("the workload's writes kept succeeding after the drain");
    assert!(is_refused(&err), "unexpected error after the drain: {err}");
    let e = try_write_direct(&dev, 0, 0xaa).expect_err("a write after the drain succeeded");
    assert!(is_refused(&e), "unexpected error after the drain: {e}");

    let st = agent.wait_status(Duration::from_secs(10), |s| s.drained.is_some());
    let d = st.drained.expect("drained");
    assert_eq!((d.tag.as_str(), d.seq), ("pf-1", seq));
    assert_eq!(st.draining, None);
    let text = run_ok(
        std::process::Command::new(bin("rewind-agent"))
            .arg("status")
            .arg("--state-dir")
            .arg(&agent.state),
    )
    .stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(&format!("drained: tag pf-1 at seq {seq}")),
        "{text}"
    );

    // Asked again under the same name: the same point.
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "pf-1", "timeout_secs": 60}"#,
    );
    assert_eq!(code, 200, "second drain: {body}");
    assert_eq!(seq_of(&body), seq, "a second drain moved the point");

    let (code, points) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));
    assert_eq!(code, 200, "{points}");
    let v: serde_json::Value = serde_json::from_str(&points).unwrap();
    assert_eq!(v["durable_seq"].as_u64(), Some(seq), "{points}");
    assert!(
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "pf-1"
                && t["kind"] == "failover"
                && t["seq"].as_u64() == Some(seq)),
        "{points}"
    );

    agent.stop();
    if std::env::var_os("DRAIN_TEST_LOGS").is_some() {
        eprintln!("{}", agent.log_text());
    }
    mtd.stop();
    let dump = work.path().join("dump-pf-1.img");
    mtd.dump(GROUP, "d0", "tag:pf-1", &dump);
    assert_same(&dump, &source);
    assert_same(&dump, &img);
}

/// With no agent connected, a drain is refused with the advice to fail over unplanned, and no
/// tag is added. An unknown group is a 404.
#[test]
fn drain_without_an_agent_is_refused_with_advice() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let (mut agent, _img) = protected(work.path(), &mtd, &[]);
    agent.stop();
    let (_, before) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));

    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "pf-1", "timeout_secs": 5}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("planned failover needs the source agent")
            && body.contains(&format!("rewind failover unplanned {GROUP} --point latest")),
        "{body}"
    );
    let (_, after) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));
    assert_eq!(before, after, "a refused drain changed the group");
    assert!(!after.contains("pf-1"), "{after}");

    let (code, body) = mtd.control_post(
        "/v1/groups/nosuch/drain",
        r#"{"tag": "pf-1", "timeout_secs": 5}"#,
    );
    assert_eq!(code, 404, "{body}");
}

/// Sets the generation and fence reason of a stopped target's group by hand (what a failover
/// does).
fn bump_generation(mtd: &Mtd, generation: u64, reason: &str) {
    let p = mtd.data_dir.join("groups").join(GROUP).join("group.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&fs::read(&p).expect("read group.json")).unwrap();
    m["generation"] = generation.into();
    m["fenced_reason"] = reason.into();
    fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).expect("write group.json");
}

/// The target restarts at a bumped generation (a failover happened while it was down): the
/// agent is refused at HELLO, reports fenced with the reason, stops reconnecting, refuses writes
/// and records the fence; started again on the same state dir, it refuses to run.
#[test]
fn a_fenced_agent_stops_and_refuses_writes_and_restarts() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mut mtd = Mtd::start(work.path());
    let (mut agent, img) = protected(work.path(), &mtd, &[]);
    mtd.stop();
    let reason = "planned failover at seq 1234, 2026-11-26T12:00:00Z";
    bump_generation(&mtd, 2, reason);
    mtd.restart();

    let st = agent.wait_status(Duration::from_secs(60), |s| s.fenced.is_some());
    let fenced = st.fenced.unwrap();
    assert!(
        fenced.contains(reason) && fenced.contains("generation 1") && fenced.contains("fenced"),
        "{fenced}"
    );
    assert!(!st.connected);
    let file = agent.state.join(format!("{GROUP}.fenced"));
    let recorded = fs::read_to_string(&file).expect("the fenced file");
    assert!(recorded.contains(reason), "{recorded}");

    // No more attempts: the target sees no new session for a while.
    let seen = mtd.log_text().matches("closing session").count();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        mtd.log_text().matches("closing session").count(),
        seen,
        "the fenced agent kept reconnecting:\n{}",
        mtd.log_text()
    );
    assert_eq!(sessions_started(&mtd), 1);

    let e = try_write_direct(&agent.link("d0"), 0, 0x55).expect_err("a fenced agent took a write");
    assert!(is_refused(&e), "{e}");
    let text = String::from_utf8_lossy(
        &run_ok(
            std::process::Command::new(bin("rewind-agent"))
                .arg("status")
                .arg("--state-dir")
                .arg(&agent.state),
        )
        .stdout,
    )
    .to_string();
    assert!(text.contains(&format!("fenced: {fenced}")), "{text}");

    agent.stop();
    let out = Agent::start_refused(work.path(), GROUP, &[("d0", &img)], &mtd.target(), &[]);
    assert!(
        out.contains("was failed over")
            && out.contains("no longer its source")
            && out.contains("fresh state dir")
            && out.contains(reason),
        "{out}"
    );
}

/// `POST /v1/groups/G/fence` ends the live session: the agent becomes fenced with the reason.
#[test]
fn fencing_a_live_session_fences_the_agent() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let (mut agent, _img) = protected(work.path(), &mtd, &[]);

    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/fence"),
        r#"{"reason": "fenced by hand in a test"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["generation"].as_u64(), Some(2), "{body}");

    let st = agent.wait_status(Duration::from_secs(20), |s| s.fenced.is_some());
    assert!(
        st.fenced
            .as_deref()
            .unwrap()
            .contains("fenced by hand in a test"),
        "{:?}",
        st.fenced
    );
    let e = try_write_direct(&agent.link("d0"), 0, 0x55).expect_err("a fenced agent took a write");
    assert!(is_refused(&e), "{e}");
    assert!(agent.state.join(format!("{GROUP}.fenced")).exists());
    let m: serde_json::Value = serde_json::from_slice(
        &fs::read(mtd.data_dir.join("groups").join(GROUP).join("group.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["generation"].as_u64(), Some(2));
    assert_eq!(m["fenced_reason"], "fenced by hand in a test");
    agent.stop();
}

/// An agent at generation 2 (from its config file) creates the group at generation 2; a
/// generation-1 agent is then refused (fenced), and the refusal says both generations.
#[test]
fn generation_two_creates_the_group_and_refuses_generation_one() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let img = work.path().join("d0.img");
    make_image(&img);
    let mut agent = Agent::start_with_config(
        work.path(),
        GROUP,
        &[("d0", &img)],
        &mtd.target(),
        "generation = 2",
        &[],
    );
    write_random_mib(&agent.link("d0"), 0, 2, 3);
    let st = agent.wait_caught_up(Duration::from_secs(60));
    assert_eq!(st.generation, 2);
    agent.stop();
    let m: serde_json::Value = serde_json::from_slice(
        &fs::read(mtd.data_dir.join("groups").join(GROUP).join("group.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["generation"].as_u64(), Some(2));

    let other = tempdir();
    let mut old = Agent::start(
        other.path(),
        GROUP,
        &[("d0", &img)],
        &mtd.target(),
        &["--generation", "1"],
    );
    let st = old.wait_status(Duration::from_secs(30), |s| s.fenced.is_some());
    let why = st.fenced.unwrap();
    assert!(
        why.contains("generation 1") && why.contains("generation 2"),
        "{why}"
    );
    old.stop();
}

/// A drain the agent cannot do (nothing was ever written: there is no seq to tag) is answered
/// with an ERROR: the target's drain fails fast with the agent's reason, and the disk takes
/// writes again.
#[test]
fn a_drain_the_agent_cannot_do_fails_fast_and_writes_go_on() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let img = work.path().join("d0.img");
    make_image(&img);
    let mut agent = Agent::start(work.path(), GROUP, &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_caught_up(Duration::from_secs(60));

    let t0 = Instant::now();
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "pf-1", "timeout_secs": 60}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("refused the drain") && body.contains("nothing has been written"),
        "{body}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the refusal took {:?}",
        t0.elapsed()
    );

    // Not drained: the workload goes on, and so does replication.
    try_write_direct(&agent.link("d0"), 0, 0x11).expect("a write after a failed drain");
    let st = agent.wait_caught_up(Duration::from_secs(60));
    assert_eq!(st.drained, None);
    assert_eq!(st.draining, None);
    agent.stop();
}

/// A drain that times out (the link is too slow to send what is queued in time) fails with a
/// 504, and the target tells the agent to resume: the disk takes writes again.
#[test]
fn a_drain_that_times_out_lets_writes_resume() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let (mut agent, _img) = protected(work.path(), &mtd, &["--bandwidth-mib", "2"]);
    // About 6 s of sending at 2 MiB/s.
    write_random_mib(&agent.link("d0"), 8, 12, 7);
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "pf-slow", "timeout_secs": 1}"#,
    );
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("not durable after 1 s"), "{body}");
    let st = agent.wait_status(Duration::from_secs(10), |s| s.draining.is_none());
    assert_eq!(st.drained, None);
    try_write_direct(&agent.link("d0"), 0, 0x22).expect("a write after a timed-out drain");
    agent.wait_caught_up(Duration::from_secs(60));
    agent.stop();
}

/// A drain asked for while the initial sync runs waits for it: the tag comes after the sync's
/// end, and the replica there equals the source.
#[test]
fn a_drain_during_the_initial_sync_waits_for_it() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::FileExt;
    let work = tempdir();
    let mut mtd = Mtd::start(work.path());
    let img = work.path().join("d0.img");
    make_image(&img);
    // 48 MiB of data already on the disk: about 3 s of initial sync at 16 MiB/s.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    let mut rng = Rng::new(9);
    for i in 0..48u64 {
        f.write_all_at(&rng.bytes(1 << 20), i << 20).unwrap();
    }
    drop(f);
    let mut agent = Agent::start(
        work.path(),
        GROUP,
        &[("d0", &img)],
        &mtd.target(),
        &["--bandwidth-mib", "16"],
    );
    // (A drain needs the session: without it the target refuses at once.)
    agent.wait_status(Duration::from_secs(10), |s| s.connected);
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "pf-sync", "timeout_secs": 120}"#,
    );
    assert_eq!(code, 200, "{body}\n{}", agent.log_text());
    let seq = seq_of(&body);
    assert!(
        agent
            .log_text()
            .contains("drain: waiting for the sync to finish"),
        "the drain did not wait for the sync:\n{}",
        agent.log_text()
    );
    let (_, points) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));
    let v: serde_json::Value = serde_json::from_str(&points).unwrap();
    assert_eq!(v["consistent"], true, "{points}");
    assert_eq!(v["durable_seq"].as_u64(), Some(seq), "{points}");
    agent.stop();
    mtd.stop();
    let dump = work.path().join("dump-pf-sync.img");
    mtd.dump(GROUP, "d0", "tag:pf-sync", &dump);
    assert_same(&dump, &img);
}

/// What a planned failover does to the source: drain, then fence. The agent reports both, stays
/// read-only, and does not come back.
#[test]
fn drain_then_fence_leaves_the_source_drained_and_fenced() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let (mut agent, img) = protected(work.path(), &mtd, &[]);
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "planned-failover", "timeout_secs": 60}"#,
    );
    assert_eq!(code, 200, "{body}");
    let seq = seq_of(&body);
    let reason = format!("planned failover at seq {seq}");
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/fence"),
        &serde_json::json!({ "reason": reason }).to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let st = agent.wait_status(Duration::from_secs(20), |s| s.fenced.is_some());
    assert!(
        st.fenced.as_deref().unwrap().contains(&reason),
        "{:?}",
        st.fenced
    );
    assert_eq!(
        st.drained.map(|d| (d.tag, d.seq)),
        Some(("planned-failover".to_string(), seq))
    );
    assert_eq!(st.draining, None);
    let e = try_write_direct(&agent.link("d0"), 0, 0x33).expect_err("a write after the failover");
    assert!(is_refused(&e), "{e}");
    // A drain now finds no agent.
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/drain"),
        r#"{"tag": "again", "timeout_secs": 5}"#,
    );
    assert_eq!(code, 409, "{body}");
    agent.stop();
    let out = Agent::start_refused(work.path(), GROUP, &[("d0", &img)], &mtd.target(), &[]);
    assert!(out.contains(&reason), "{out}");
}

/// The agent dies while it drains: the target's drain fails at once (502) instead of waiting
/// for its timeout.
#[test]
fn a_drain_fails_when_the_session_ends_first() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let mtd = Arc::new(Mtd::start(work.path()));
    let (mut agent, _img) = protected(work.path(), &mtd, &["--bandwidth-mib", "2"]);
    // About 6 s of sending at 2 MiB/s before the tag can go.
    write_random_mib(&agent.link("d0"), 8, 12, 8);
    let drain = {
        let mtd = Arc::clone(&mtd);
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = mtd.control_post(
                &format!("/v1/groups/{GROUP}/drain"),
                r#"{"tag": "pf-dead", "timeout_secs": 60}"#,
            );
            (r, t0.elapsed())
        })
    };
    agent.wait_status(Duration::from_secs(10), |s| s.draining.is_some());
    agent.kill9();
    let ((code, body), took) = drain.join().expect("drain thread");
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("ended before the drain tag arrived"),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(30),
        "the failed drain took {took:?}"
    );
}

/// Tag now (`POST /v1/groups/G/tag`, what the site's console does): under a running workload the
/// agent tags its current seq and writes go on; the tag is a User point at the target. With no
/// agent the target refuses at once. Bad input changes nothing. (An agent's refusal, which does
/// not end its session, is in `mtd/tests/tag_now.rs`.)
#[test]
fn tag_now_tags_under_a_workload_and_writes_go_on() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::FileExt;
    let work = tempdir();
    let mtd = Mtd::start(work.path());
    let (mut agent, _img) = protected(work.path(), &mtd, &[]);
    let sessions = sessions_started(&mtd);

    // Under a workload: the tag comes back with its seq, and writes go on after it.
    let dev = agent.link("d0");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workload = {
        let (stop, written, dev) = (Arc::clone(&stop), Arc::clone(&written), dev.clone());
        std::thread::spawn(move || {
            let f = open_direct(&dev);
            let mut buf = rewind_linux::aligned::AlignedBuf::new(1 << 20);
            let mut rng = Rng::new(12);
            while !stop.load(Ordering::SeqCst) {
                rng.fill(&mut buf);
                let at = (rng.next_u64() % (DISK_SIZE >> 20)) << 20;
                f.write_all_at(&buf, at).expect("a write during tag now");
                written.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/tag"),
        r#"{"tag": "now-1", "timeout_secs": 60}"#,
    );
    assert_eq!(code, 200, "{body}\n{}", agent.log_text());
    let seq = seq_of(&body);
    let after_tag = written.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    workload.join().expect("the workload failed");
    assert!(
        written.load(Ordering::SeqCst) > after_tag,
        "writes stopped after the tag"
    );
    let (_, points) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));
    let v: serde_json::Value = serde_json::from_str(&points).unwrap();
    let tag = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "now-1")
        .unwrap_or_else(|| panic!("now-1 not among the points: {points}"));
    assert_eq!(tag["seq"].as_u64(), Some(seq), "{points}");
    assert_eq!(tag["kind"], "user", "{points}");
    assert_eq!(sessions_started(&mtd), sessions, "the session was kept");

    // Bad input and an unknown group change nothing; without an agent the target says so.
    let (code, body) =
        mtd.control_post(&format!("/v1/groups/{GROUP}/tag"), r#"{"tag": "bad/name"}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = mtd.control_post("/v1/groups/nosuch/tag", r#"{"tag": "x"}"#);
    assert_eq!(code, 404, "{body}");
    agent.stop();
    let (code, body) = mtd.control_post(
        &format!("/v1/groups/{GROUP}/tag"),
        r#"{"tag": "no-agent", "timeout_secs": 5}"#,
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no agent is connected"), "{body}");
    let (_, after) = mtd.control_get(&format!("/v1/groups/{GROUP}/points"));
    assert!(
        !after.contains("bad/name") && !after.contains("no-agent"),
        "{after}"
    );
}
