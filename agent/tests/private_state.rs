//! The agent's state directory holds the spool (captured writes in plain text) and the dirty map:
//! it is made 0700 at start even when created open, and every file in it is private
//! (issue 10, finding 5).

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use common::*;

#[test]
fn the_state_directory_and_spool_are_private() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::File::create(&img)
        .and_then(|f| f.set_len(16 << 20))
        .unwrap();
    let mtd = Mtd::start(w);
    // The harness makes the state dir under the test's umask (0755): open to everybody.
    let mut agent = Agent::start(w, "priv", &[("d0", &img)], &mtd.target(), &[]);
    agent.wait_caught_up(Duration::from_secs(60));
    let dev = agent.link("d0");
    let out = std::process::Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=2", "oflag=direct"])
        .arg(format!("of={}", dev.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    agent.wait_caught_up(Duration::from_secs(60));
    let state = agent.state.clone();
    let mode = fs::metadata(&state).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700, "state dir {} is {mode:o}", state.display());
    let mut files = 0;
    for e in fs::read_dir(&state).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_socket() {
            continue;
        }
        files += 1;
        assert_eq!(
            m.mode() & 0o077,
            0,
            "{} is {:o}: open to other users",
            p.display(),
            m.mode() & 0o777
        );
    }
    assert!(files >= 2, "no state files in {}", state.display());
    assert!(
        state.join("priv.spool").exists(),
        "no spool in {}",
        state.display()
    );
    agent.stop();
}
