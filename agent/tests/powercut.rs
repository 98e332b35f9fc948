//! Power cuts of the source: the agent's state dir and its backing disk on power-cut file
//! systems. A workload writes through the protected device with an fdatasync every few writes;
//! at a random moment the agent is killed and everything not fsynced is dropped (the disk's
//! bytes and the state dir's files and entries alike), round after round. After each cut every
//! write the workload saw flushed is on the disk; after the last, the agent restarts, its
//! dirty-region map must cover every block where the target and the disk differ, the resync
//! converges, and latest equals the disk byte for byte.
//!
//! `REWIND_POWERCUT_ROUNDS` (default 3) sets the number of cuts.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const BLOCK: usize = 4096;
const BLOCKS: usize = 8192; // 32 MiB
const WRITES_PER_FLUSH: u64 = 8;

/// Block `b` written by write number `g` (g > 0): never all zeros.
fn pattern(b: usize, g: u64, out: &mut [u8]) {
    for (i, w) in out.chunks_mut(16).enumerate() {
        w[..8].copy_from_slice(&(b as u64).to_le_bytes());
        w[8..].copy_from_slice(&(g ^ (i as u64) << 48).to_le_bytes());
    }
}

/// What the workload knows of each block: the write a completed fdatasync covered, and the
/// writes issued since (any of which a cut may or may not keep).
struct BlockModel {
    durable: Vec<u64>,
    since: Vec<Vec<u64>>,
    next_gen: u64,
}

impl BlockModel {
    /// Reads the disk after a cut: every block must hold its durable write or one issued since.
    /// Returns the blocks that do not; afterwards what the disk holds is the new durable truth.
    fn check_after_cut(&mut self, disk: &Path) -> Vec<usize> {
        let bytes = fs::read(disk).unwrap();
        let mut bad = Vec::new();
        let mut want = vec![0u8; BLOCK];
        for b in 0..BLOCKS {
            let got = &bytes[b * BLOCK..(b + 1) * BLOCK];
            let candidates = std::iter::once(self.durable[b]).chain(self.since[b].iter().copied());
            let mut found = None;
            for g in candidates {
                if g == 0 {
                    if got.iter().all(|&x| x == 0) {
                        found = Some(0);
                    }
                } else {
                    pattern(b, g, &mut want);
                    if got == want.as_slice() {
                        found = Some(g);
                    }
                }
            }
            match found {
                Some(g) => self.durable[b] = g,
                None => bad.push(b),
            }
            self.since[b].clear();
        }
        bad
    }
}

/// Writes 1 to 16 blocks at a time through `dev` (O_DIRECT), fdatasync every few writes, until
/// a write fails (the agent died) or `stop` is set.
fn writer(dev: PathBuf, seed: u64, model: Arc<Mutex<BlockModel>>, stop: Arc<AtomicBool>) {
    let Ok(f) = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&dev)
    else {
        return;
    };
    let mut buf = rewind_linux::aligned::AlignedBuf::new(16 * BLOCK);
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let blocks = 1 + (rng.next_u64() % 16) as usize;
        let first = (rng.next_u64() as usize) % (BLOCKS - blocks);
        let g = {
            let mut m = model.lock().unwrap();
            m.next_gen += 1;
            let g = m.next_gen;
            for b in first..first + blocks {
                m.since[b].push(g);
            }
            g
        };
        for (i, chunk) in buf[..blocks * BLOCK].chunks_mut(BLOCK).enumerate() {
            pattern(first + i, g, chunk);
        }
        if f.write_all_at(&buf[..blocks * BLOCK], (first * BLOCK) as u64)
            .is_err()
        {
            return;
        }
        n += 1;
        if n.is_multiple_of(WRITES_PER_FLUSH) {
            // Writes completed before the flush are what it covers.
            let covered: Vec<(usize, u64)> = {
                let m = model.lock().unwrap();
                (0..BLOCKS)
                    .filter_map(|b| m.since[b].last().map(|&g| (b, g)))
                    .collect()
            };
            if f.sync_data().is_err() {
                return;
            }
            let mut m = model.lock().unwrap();
            for (b, g) in covered {
                // Later writes to b (none: one writer) stay in `since`.
                m.durable[b] = g;
                m.since[b].retain(|&x| x > g);
            }
        }
    }
}

fn make_disk(dir: &Path) -> PathBuf {
    let img = dir.join("disk.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len((BLOCKS * BLOCK) as u64).unwrap();
    f.sync_all().unwrap();
    fs::File::open(dir).unwrap().sync_all().unwrap();
    img
}

#[test]
fn power_cuts_of_the_source_lose_no_flushed_write_and_converge() {
    if !can_run() {
        return;
    }
    let rounds = powercut_rounds(3);
    let work = tempdir();
    let w = work.path();
    let Some(mut state_fs) = powercut_mount(w, "agent-state") else {
        return;
    };
    let Some(mut disk_fs) = powercut_mount(w, "disk") else {
        return;
    };
    let img = make_disk(disk_fs.dir());
    let mut mtd = Mtd::start(w);
    let model = Arc::new(Mutex::new(BlockModel {
        durable: vec![0; BLOCKS],
        since: vec![Vec::new(); BLOCKS],
        next_gen: 0,
    }));
    let mut rng = Rng::new(u64::from(std::process::id()));
    let mut lost = 0u64;
    for round in 0..rounds {
        let mut agent = Agent::start(w, "pcg", &[("d0", &img)], &mtd.target(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (dev, model, stop) = (agent.link("d0"), model.clone(), stop.clone());
            std::thread::spawn(move || writer(dev, round as u64 + 1, model, stop))
        };
        std::thread::sleep(Duration::from_millis(300 + rng.next_u64() % 1500));
        // The last cut dropped the unsynced status file; on a loaded machine the new agent may
        // not have written its first one yet: wait for it rather than read a file not there.
        let st = agent.fresh_status();
        agent.kill9();
        stop.store(true, Ordering::SeqCst);
        t.join().expect("writer");
        drop(agent);
        let s = state_fs.cut().expect("cut the state dir");
        let d = disk_fs.cut().expect("cut the disk");
        eprintln!(
            "round {round}: seq {} recorded, {} acked, {} dirty regions; the cut dropped {} + {} bytes, {} + {} entries",
            st.last_seq, st.acked_seq, st.dirty_regions, s.bytes, d.bytes, s.entries, d.entries
        );
        let bad = model.lock().unwrap().check_after_cut(&img);
        if !bad.is_empty() {
            eprintln!("round {round}: flushed writes missing from the disk in blocks {bad:?}");
            lost += bad.len() as u64;
        }
    }
    assert!(
        model.lock().unwrap().next_gen > 0,
        "the workload wrote nothing"
    );

    // The last start: the dirty map must bring the target level with the disk.
    let agent = Agent::start(w, "pcg", &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_caught_up(Duration::from_secs(180));
    drop(agent);
    mtd.stop();
    let latest = w.join("latest.img");
    mtd.dump("pcg", "d0", "latest", &latest);
    let (a, b) = (fs::read(&latest).unwrap(), fs::read(&img).unwrap());
    let differ: Vec<usize> = (0..BLOCKS)
        .filter(|&i| a[i * BLOCK..(i + 1) * BLOCK] != b[i * BLOCK..(i + 1) * BLOCK])
        .collect();
    if !differ.is_empty() {
        eprintln!(
            "latest differs from the source in {} blocks (first {:?}): the dirty map missed them",
            differ.len(),
            &differ[..differ.len().min(10)]
        );
        lost += differ.len() as u64;
    }
    print_powercut_result("agent", rounds, lost);
    assert_eq!(lost, 0, "writes lost to power cuts of the source");
    drop(mtd);
    drop(disk_fs);
    drop(state_fs);
}

/// A state directory an operator just made (its entry still only in the page cache) survives a
/// power cut once an agent has locked it: the lock makes the entry durable in its parent, so
/// the dirty-region map written in it is not lost with the directory.
#[test]
fn a_fresh_state_dir_survives_a_power_cut_once_locked() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let Some(mut fs_) = powercut_mount(work.path(), "state-parent") else {
        return;
    };
    let fresh = fs_.dir().join("state");
    fs::create_dir(&fresh).unwrap();
    let lock = rewind_agent::state::StateDir::new(&fresh, "g")
        .lock()
        .unwrap();
    drop(lock);
    // Control, made after the lock: a directory never synced is gone after the cut.
    let unsynced = fs_.dir().join("unsynced");
    fs::create_dir(&unsynced).unwrap();
    let cut = fs_.cut().expect("cut");
    assert!(
        !unsynced.exists(),
        "the power-cut file system kept an unsynced directory (dropped {} entries)",
        cut.entries
    );
    assert!(fresh.is_dir(), "the locked state dir was lost to the cut");
    drop(fs_);
}
