//! A log that cannot be written costs log lines, not capture. With stderr on `/dev/full` (every
//! write fails with ENOSPC, as on a full disk) the agent used to panic in the first thread that
//! logged: at start-up the agent died; later, a FUSE queue thread died and every write issued on
//! its CPU hung.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn an_agent_whose_log_cannot_be_written_captures_and_replicates() {
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    sparse_image(&img, 64 << 20);
    let mut mtd = Mtd::start(w);
    // The harness appends the agent's stderr to work/agent.log: make that /dev/full.
    std::os::unix::fs::symlink("/dev/full", w.join("agent.log")).expect("symlink the log");
    let mut agent = Agent::start(w, "g1", &[("d0", &img)], &mtd.target(), &[]);
    let dev = agent.link("d0");
    let data = w.join("pattern.bin");
    fs::write(&data, Rng::new(7).bytes(8 << 20)).expect("write the data");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", data.display()))
            .arg(format!("of={}", dev.display()))
            .args([
                "bs=1M",
                "seek=3",
                "oflag=direct",
                "conv=notrunc",
                "status=none",
            ]),
    );
    // Reads through the device give what was written, and so does the backing image.
    let mut back = vec![0u8; 8 << 20];
    let f = fs::File::open(&dev).expect("open the device");
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, 3 << 20).expect("read back");
    assert!(
        back == fs::read(&data).unwrap(),
        "the device reads back the data"
    );
    run_ok(Command::new("cmp").arg(&dev).arg(&img));
    let st = agent.wait_caught_up(Duration::from_secs(120));
    assert!(st.connected);
    agent.stop();
    mtd.stop_and_check_latest("g1", "d0", &img);
}
