//! The agent crashes (kill -9) in the middle of its initial sync and starts again: with no record
//! of a completed sync it syncs again (sending zero ranges too, since the target holds a partial
//! copy), continuing the target's seq numbering; then a clean restart needs no sync at all. After
//! each phase the target at latest equals the source byte for byte.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rewind_agent::status::SyncState;

const DISK_SIZE: u64 = 256 << 20;

/// Direct writes of a recognisable pattern through the protected device.
fn write_through(dev: &Path, seed: u64, count: u64) {
    let f = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .expect("open the protected device");
    let mut buf = rewind_agent::aligned::AlignedBuf::new(128 << 10);
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
        let mut x: u64 = 88172645463325252;
        let chunk: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for k in 0..200u64 {
            f.write_all_at(&chunk, k << 20).unwrap();
        }
    }
    let mut mtd = Mtd::start(w);
    let slow = ["--max-queue-mib", "16", "--level", "19"];
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

    // Restart: no completed sync recorded, so it syncs again, zeros included.
    drop(agent);
    let mut agent = Agent::start(w, "g4", &[("d0", &img)], &mtd.target(), &[]);
    write_through(&agent.link("d0"), 2, 50);
    let st = agent.wait_caught_up(Duration::from_secs(180));
    assert_eq!(st.sync, SyncState::Done, "{st:?}");
    agent.stop();
    drop(agent);
    mtd.stop();
    let latest = w.join("latest1.img");
    mtd.dump("g4", "d0", "latest", &latest);
    assert_same(&latest, &img);

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
    mtd.stop();
    let latest = w.join("latest2.img");
    mtd.dump("g4", "d0", "latest", &latest);
    assert_same(&latest, &img);
}
