//! kill -9 of the agent at random moments while a workload writes through the protected device,
//! round after round; then one last start. The dirty-region map must bring the target level with
//! the source every time: after the last round the target at latest equals the source byte for
//! byte. Some rounds run with a slow, high zstd level so that writes are in flight at the kill.
//!
//! `REWIND_AGENT_CRASH_ROUNDS` (default 6) sets the number of kills.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const DISK_SIZE: u64 = 128 << 20;

/// The workload's pace, bytes per second, and the target's history: unpaced writes and a 24 h
/// window would keep everything a campaign of 1000 rounds writes (100 GB and more). The check is
/// at latest, which retention does not touch.
const RATE: u64 = 16 << 20;
const RETENTION: &str = "30s";

/// Writes pseudo-random blocks (4 KiB to 256 KiB) through `dev` until it fails (the agent was
/// killed) or `stop` is set; returns how many writes completed.
fn writer(dev: PathBuf, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    // (The agent may be killed before the device opens: then nothing was written.)
    let Ok(f) = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&dev)
    else {
        return 0;
    };
    let mut buf = rewind_linux::aligned::AlignedBuf::new(256 << 10);
    let mut rng = Rng::new(seed);
    let mut next = || rng.next_u64();
    let mut done = 0;
    let (t0, mut written) = (Instant::now(), 0u64);
    while !stop.load(Ordering::SeqCst) {
        let due = Duration::from_secs_f64(written as f64 / RATE as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        let blocks = 1 + (next() % 64) as usize;
        let len = blocks * 4096;
        // Most writes land in a hot 16 MiB zone, some anywhere.
        let zone = if next() % 4 == 0 { DISK_SIZE } else { 16 << 20 };
        let off = (next() % ((zone - len as u64) / 4096)) * 4096;
        for w in buf[..len].chunks_mut(8) {
            w.copy_from_slice(&next().to_le_bytes());
        }
        if f.write_all_at(&buf[..len], off).is_err() {
            break;
        }
        written += len as u64;
        done += 1;
    }
    done
}

#[test]
fn kill9_at_random_moments_then_converge() {
    if !can_run() {
        return;
    }
    let rounds: u64 = std::env::var("REWIND_AGENT_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(DISK_SIZE).unwrap();
    let mut mtd = Mtd::start_with(w, &["--retention", RETENTION]);
    let mut rng = (std::process::id() as u64) << 16 | 0x9e37;
    let mut rand = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let mut total_writes = 0;
    for round in 0..rounds {
        let slow = ["--level", "19", "--fixed-level", "--max-queue-mib", "16"];
        let extra: &[&str] = if round % 2 == 1 { &slow } else { &[] };
        let mut agent = Agent::start(w, "gc", &[("d0", &img)], &mtd.target(), extra);
        let stop = Arc::new(AtomicBool::new(false));
        let dev = agent.link("d0");
        let s2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || writer(dev, round + 1, s2));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(200 + rand(1500)));
        let st = agent.status();
        eprintln!(
            "round {round}: kill -9 after {:?}: seq {} recorded, {} acked, {} dirty regions, sync {:?}",
            t0.elapsed(),
            st.last_seq,
            st.acked_seq,
            st.dirty_regions,
            st.sync
        );
        agent.kill9();
        stop.store(true, Ordering::SeqCst);
        total_writes += t.join().expect("writer");
        drop(agent);
    }
    assert!(total_writes > 0, "the workload wrote something");

    // The last start: only dirty regions are compared; the target ends equal to the source.
    let agent = Agent::start(w, "gc", &[("d0", &img)], &mtd.target(), &[]);
    let first = agent.fresh_status();
    let st = agent.wait_caught_up(Duration::from_secs(180));
    eprintln!(
        "after {rounds} kills and {total_writes} writes: {} regions compared, {} bytes resent",
        first.pinned_regions, st.disks[0].sync_sent_bytes
    );
    drop(agent);
    mtd.stop_and_check_latest("gc", "d0", &img);
}
