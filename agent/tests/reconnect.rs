//! The target crashes (kill -9) while an ext4 workload writes through the agent: the agent keeps
//! capturing, reconnects with backoff once the target is back, resends everything after the
//! target's durable seq, and the replica converges to the source byte for byte.

mod common;

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn target_crash_and_restart_converges() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img).unwrap().set_len(256 << 20).unwrap();
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start(w, "g3", &[("d0", &img)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let mnt = w.join("m");
    let mut mount = Mount::new(&dev, &mnt);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let mnt = mnt.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let data = vec![(i % 251) as u8; 256 << 10];
                fs::write(mnt.join(format!("f{}", i % 40)), &data).expect("write a file");
                if i % 10 == 9 {
                    let _ = Command::new("sync").arg("-f").arg(&mnt).status();
                }
                i += 1;
            }
            i
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    mtd.kill9();
    let acked_at_crash = agent.status().acked_seq;
    // Writes go on while the target is down.
    std::thread::sleep(Duration::from_millis(1500));
    let st = agent.status();
    assert!(
        !st.connected,
        "the agent noticed the target is gone: {st:?}"
    );
    assert!(
        st.last_seq > acked_at_crash,
        "writes were captured meanwhile: {st:?}"
    );
    mtd.restart();
    let t0 = Instant::now();
    while !agent.status().connected {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "agent did not reconnect:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let files = writer.join().expect("writer");
    assert!(files > 0);
    mount.umount();

    agent.wait_caught_up(Duration::from_secs(120));
    agent.stop();
    mtd.stop();
    let latest = w.join("latest.img");
    mtd.dump("g3", "d0", "latest", &latest);
    assert_same(&latest, &img);
    assert_fsck_clean(&latest);
}
