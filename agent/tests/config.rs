//! The agent run from a TOML settings file, scheduled tags and the bandwidth limit, end to end
//! against a real `rewind-mtd serve`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const DISK_SIZE: u64 = 64 << 20;

fn make_image(path: &Path) {
    fs::File::create(path)
        .expect("image")
        .set_len(DISK_SIZE)
        .expect("size image");
}

/// A file of `len` pseudo-random (incompressible) bytes.
fn random_file(path: &Path, len: usize, seed: u64) {
    fs::write(path, Rng::new(seed).bytes(len)).expect("random file");
}

/// `dd` of `src` onto the protected device at `seek_mib`, with O_DIRECT (no page cache between
/// the write and the capture).
fn dd(src: &Path, dev: &Path, seek_mib: u64) {
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", src.display()))
            .arg(format!("of={}", dev.display()))
            .args(["bs=1M", "oflag=direct", "status=none"])
            .arg(format!("seek={seek_mib}")),
    );
}

/// Tag names of a group on the running target (`rewind points --json`).
fn target_tags(mtd: &Mtd, group: &str) -> Vec<String> {
    let out = run_ok(
        Command::new(bin("rewind"))
            .arg("--control")
            .arg(&mtd.control)
            .args(["--json", "points", group]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("points JSON");
    v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags array in {v}"))
        .iter()
        .map(|t| t["name"].as_str().expect("tag name").to_string())
        .collect()
}

/// Every setting from the file (none on the command line): the data written through the
/// protected device reaches the target byte for byte.
#[test]
fn an_agent_configured_by_file_replicates() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    make_image(&img);
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start_with_config(
        w,
        "gcfg",
        &[("d0", &img)],
        &mtd.target(),
        "level = 3\nmax_queue_mib = 32\nio_engine = \"sync\"\nfuse_threads = 4\ndrain_timeout = 20",
        &[],
    );
    let st = agent.wait_caught_up(Duration::from_secs(60));
    assert_eq!(st.group, "gcfg");
    let data = w.join("data.bin");
    random_file(&data, 8 << 20, 7);
    dd(&data, &agent.link("d0"), 5);
    agent.wait_caught_up(Duration::from_secs(60));
    agent.stop();
    mtd.stop_and_check_latest("gcfg", "d0", &img);
}

/// `tag_every_secs = 1`: after about three seconds of running, the target holds at least two
/// `auto-*` tags.
#[test]
fn scheduled_tags_reach_the_target() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    make_image(&img);
    let mut mtd = Mtd::start(w);
    let mut agent = Agent::start_with_config(
        w,
        "gtag",
        &[("d0", &img)],
        &mtd.target(),
        "tag_every_secs = 1",
        &[],
    );
    let data = w.join("data.bin");
    random_file(&data, 1 << 20, 3);
    dd(&data, &agent.link("d0"), 1);
    agent.wait_caught_up(Duration::from_secs(60));
    // At least two scheduled tags: polled, since a loaded machine may take longer than 1 s each.
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::sleep(Duration::from_millis(3500));
    while target_tags(&mtd, "gtag")
        .iter()
        .filter(|t| t.starts_with("auto-"))
        .count()
        < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    agent.stop();
    let tags = target_tags(&mtd, "gtag");
    let auto: Vec<&String> = tags.iter().filter(|t| t.starts_with("auto-")).collect();
    assert!(
        auto.len() >= 2,
        "tags on the target: {tags:?}\n{}",
        agent.log_text()
    );
    assert!(agent.log_text().contains("scheduled tag queued"));
    mtd.stop();
}

/// Runs an agent with `extra` flags on a fresh image under `work`, waits for its (empty)
/// initial sync, writes `data` and returns how long after the write the target acknowledged it.
/// Checks the target's copy too.
fn time_to_ack(work: &Path, data: &Path, extra: &[&str]) -> Duration {
    fs::create_dir_all(work).expect("work dir");
    let img = work.join("disk.img");
    make_image(&img);
    let mut mtd = Mtd::start(work);
    let mut agent = Agent::start(work, "gbw", &[("d0", &img)], &mtd.target(), extra);
    // The image is all zeros: the initial sync sends next to nothing.
    agent.wait_caught_up(Duration::from_secs(60));
    dd(data, &agent.link("d0"), 2);
    let written = Instant::now();
    agent.wait_caught_up(Duration::from_secs(60));
    let took = written.elapsed();
    agent.stop();
    mtd.stop_and_check_latest("gbw", "d0", &img);
    took
}

/// `--bandwidth-mib 4`: 16 MiB of incompressible data takes about 4 s to be acknowledged (at
/// least 2.5 s, allowing for the burst and timing), and far longer than without the limit.
#[test]
fn the_bandwidth_limit_slows_replication() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let data = w.join("data.bin");
    random_file(&data, 16 << 20, 11);
    let free = time_to_ack(&w.join("unlimited"), &data, &[]);
    let limited = time_to_ack(&w.join("limited"), &data, &["--bandwidth-mib", "4"]);
    eprintln!("16 MiB acknowledged {free:?} after the write unlimited, {limited:?} at 4 MiB/s");
    assert!(
        limited >= Duration::from_millis(2500),
        "16 MiB at 4 MiB/s acknowledged in {limited:?}"
    );
    assert!(limited < Duration::from_secs(30), "{limited:?}");
    assert!(
        free * 2 < limited,
        "unlimited {free:?} is not much faster than limited {limited:?}"
    );
}
