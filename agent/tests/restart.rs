//! The agent crashes (kill -9) and starts again. Its dirty-region map says which regions may
//! differ from the target: mid-sync, the regions not yet acknowledged; mid-stream, the regions
//! whose writes were in flight. The restart compares only those with the target (HASHES) and
//! sends only what differs, continuing the target's seq numbering; a clean restart needs no
//! sync at all. After each phase the target at latest equals the source byte for byte.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rewind_agent::state::status::SyncState;

const DISK_SIZE: u64 = 256 << 20;

/// Direct writes of a recognisable pattern through the protected device.
fn write_through(dev: &Path, seed: u64, count: u64) {
    let f = open_direct(dev);
    let mut buf = rewind_linux::aligned::AlignedBuf::new(128 << 10);
    for i in 0..count {
        buf.fill((seed * 31 + i) as u8);
        let off = ((seed * 7919 + i * 104_729) % (DISK_SIZE / 4096 - 32)) * 4096;
        f.write_all_at(&buf, off).expect("write");
    }
}

#[test]
fn crash_mid_sync_then_restarts_converge() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    {
        let f = fs::File::create(&img).unwrap();
        f.set_len(DISK_SIZE).unwrap();
        // Incompressible data over most of the disk, so the sync takes a while at a high level.
        let chunk = Rng::new(88172645463325252).bytes(1 << 20);
        for k in 0..200u64 {
            f.write_all_at(&chunk, k << 20).unwrap();
        }
    }
    let mut mtd = Mtd::start(w);
    let slow = ["--max-queue-mib", "16", "--level", "19", "--fixed-level"];
    let mut agent = Agent::start(w, "g4", &[("d0", &img)], &mtd.target(), &slow);
    let t0 = Instant::now();
    let mut crashed_mid_sync = false;
    loop {
        let st = agent.status();
        if st.sync == SyncState::Running && st.acked_seq > 0 && st.disks[0].sync_percent < 80.0 {
            crashed_mid_sync = true;
            break;
        }
        if matches!(st.sync, SyncState::Done | SyncState::Acking) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{st:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    write_through(&agent.link("d0"), 1, 50);
    agent.kill9();
    eprintln!("crashed in the middle of the sync: {crashed_mid_sync}");

    // Restart: the regions the target had not acknowledged are compared and resent.
    drop(agent);
    let mut agent = Agent::start(w, "g4", &[("d0", &img)], &mtd.target(), &[]);
    write_through(&agent.link("d0"), 2, 50);
    let st = agent.wait_caught_up(Duration::from_secs(180));
    assert_eq!(st.sync, SyncState::Done, "{st:?}");
    agent.stop();
    drop(agent);
    mtd.stop_and_check_latest("g4", "d0", &img);

    // A clean restart: the target has the group and the sync completed, so none is needed;
    // seqs continue after the target's.
    mtd.restart();
    let mut agent = Agent::start(w, "g4", &[("d0", &img)], &mtd.target(), &[]);
    let before = agent.wait_caught_up(Duration::from_secs(30));
    assert_eq!(before.sync, SyncState::NotNeeded, "{before:?}");
    write_through(&agent.link("d0"), 3, 50);
    let after = agent.wait_caught_up(Duration::from_secs(60));
    assert!(
        after.acked_seq >= before.acked_seq + 50,
        "{before:?} -> {after:?}"
    );
    agent.stop();
    mtd.stop_and_check_latest("g4", "d0", &img);
}

/// kill -9 of the agent while the stream is behind (a slow, high zstd level): the writes in
/// flight are in the dirty-region map, so the restart compares only those regions with the
/// target and sends only what differs, far less than the disk.
#[test]
fn crash_mid_stream_resyncs_only_the_regions_in_flight() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    {
        let f = fs::File::create(&img).unwrap();
        f.set_len(DISK_SIZE).unwrap();
        let chunk: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for k in 0..128u64 {
            f.write_all_at(&chunk, k << 21).unwrap();
        }
    }
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "g5", &[("d0", &img)], &mtd.target(), &[]);
    let synced = agent.wait_caught_up(Duration::from_secs(120));
    assert_eq!(synced.sync, SyncState::Done, "{synced:?}");
    agent.stop();
    drop(agent);

    // Slow the stream down so writes pile up unacknowledged, then crash.
    let slow = ["--max-queue-mib", "16", "--level", "19", "--fixed-level"];
    let mut agent = Agent::start(w, "g5", &[("d0", &img)], &mtd.target(), &slow);
    let st = agent.wait_caught_up(Duration::from_secs(30));
    assert_eq!(
        st.sync,
        SyncState::NotNeeded,
        "a clean stop leaves nothing dirty: {st:?}"
    );
    // 24 MiB in 1 MiB writes over 24 regions; incompressible, so zstd -19 keeps the stream
    // behind.
    write_random_mib(&agent.link("d0"), 64, 24, 0x9e3779b97f4a7c15);
    let st = agent.fresh_status();
    assert!(
        st.last_seq > st.acked_seq,
        "writes are in flight at the crash: {st:?}"
    );
    agent.kill9();
    drop(agent);

    let agent = Agent::start(w, "g5", &[("d0", &img)], &mtd.target(), &[]);
    let first = agent.status();
    assert!(
        first.dirty_regions > 0 && first.dirty_regions <= 24,
        "only the regions in flight are dirty: {first:?}"
    );
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert_eq!(st.sync, SyncState::Done, "{st:?}");
    assert_eq!(st.sync_kind.as_deref(), Some("resync"), "{st:?}");
    let resent = st.disks[0].sync_sent_bytes;
    assert!(
        resent <= 24 << 20,
        "resent {resent} bytes: far below the disk's {DISK_SIZE}"
    );
    eprintln!(
        "regions compared: {}, bytes resent: {resent}",
        first.dirty_regions
    );
    drop(agent);
    mtd.stop_and_check_latest("g5", "d0", &img);
}

fn copy_dir(from: &Path, to: &Path) {
    run_ok(
        std::process::Command::new("cp")
            .args(["-a", "--sparse=always"])
            .arg(from)
            .arg(to),
    );
}

/// The target loses data it had acknowledged (its data dir restored from an older copy): the
/// agent notices (the target's durable seq is below what it acknowledged), renumbers its stream
/// after the target's, compares every region and converges, both while it runs and, from the
/// acknowledged seq it keeps in its state dir, across its own restart.
#[test]
fn a_target_that_lost_acknowledged_data_is_resynced() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(DISK_SIZE).unwrap();
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "gl", &[("d0", &img)], &mtd.target(), &[]);
    write_random_mib(&agent.link("d0"), 0, 8, 1);
    agent.wait_caught_up(Duration::from_secs(60));
    mtd.stop();
    let old = w.join("mtd-data.old");
    copy_dir(&mtd.data_dir, &old);
    mtd.restart();
    write_random_mib(&agent.link("d0"), 64, 8, 2);
    let before = agent.wait_caught_up(Duration::from_secs(60));

    // The target goes back to its older copy while the agent runs.
    mtd.stop();
    fs::remove_dir_all(&mtd.data_dir).unwrap();
    copy_dir(&old, &mtd.data_dir);
    mtd.restart();
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert_eq!(
        st.sync_kind.as_deref(),
        Some("resync"),
        "{st:?}\n{}",
        agent.log_text()
    );
    assert!(
        st.disks[0].sync_sent_bytes >= 8 << 20,
        "the lost 8 MiB were sent again: {st:?} (before: {before:?})"
    );
    assert!(agent.log_text().contains("lost acknowledged"));
    // Below what it had acknowledged as durable: every region is compared, not only the dirty.
    assert_eq!(st.last_loss_repair.as_deref(), Some("compare"), "{st:?}");
    assert!(
        st.compared_regions >= DISK_SIZE >> 20 && st.resent_regions == 0,
        "{st:?}"
    );
    agent.stop();
    drop(agent);
    mtd.stop_and_check_latest("gl", "d0", &img);

    // Again while the agent is down: its state dir remembers what was acknowledged.
    fs::remove_dir_all(&mtd.data_dir).unwrap();
    copy_dir(&old, &mtd.data_dir);
    mtd.restart();
    let agent = Agent::start(w, "gl", &[("d0", &img)], &mtd.target(), &[]);
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert_eq!(st.sync_kind.as_deref(), Some("resync"), "{st:?}");
    assert!(st.disks[0].sync_sent_bytes >= 8 << 20, "{st:?}");
    assert_eq!(st.last_loss_repair.as_deref(), Some("compare"), "{st:?}");
    assert!(st.compared_regions >= DISK_SIZE >> 20, "{st:?}");
    drop(agent);
    mtd.stop_and_check_latest("gl", "d0", &img);
}
