//! Bad settings give a clear error, exit non-zero, and touch no data.

mod common;

use std::fs;
use std::process::Command;

use common::*;

fn agent_run(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("rewind-agent"))
        .arg("run")
        .args(args)
        .output()
        .expect("run rewind-agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_settings_are_refused_clearly_and_touch_nothing() {
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    fs::write(&img, vec![0x5au8; 1 << 20]).unwrap();
    let state = w.join("state");
    fs::create_dir(&state).unwrap();
    let disk = format!("d0={}", img.display());
    let st = state.to_str().unwrap();
    let mnt = w.join("mnt");
    let base = |target: &str, state: &str, disk: &str| {
        vec![
            "--group".to_string(),
            "g".into(),
            "--disk".into(),
            disk.to_string(),
            "--target".into(),
            target.to_string(),
            "--state-dir".into(),
            state.to_string(),
            "--mount-dir".into(),
            mnt.to_str().unwrap().to_string(),
            "--links-dir".into(),
            w.join("links").to_str().unwrap().to_string(),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base("tcp:192.0.2.1:7000", st, &disk), "TLS"),
        (base("ftp:x", st, &disk), "unix:PATH or tcp:HOST:PORT"),
        (
            base(
                "unix:/nonexistent.sock",
                w.join("missing").to_str().unwrap(),
                &disk,
            ),
            "does not exist",
        ),
        (base("unix:/nonexistent.sock", st, "d0"), "NAME=PATH"),
        (
            base("unix:/nonexistent.sock", st, "d0=/nonexistent/disk.img"),
            "/nonexistent/disk.img",
        ),
        (
            {
                let mut a = base("unix:/nonexistent.sock", st, &disk);
                a.extend(["--level".into(), "99".into()]);
                a
            },
            "zstd level",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, err) = agent_run(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(
            err.contains(want),
            "{args:?}: error {err:?} should mention {want:?}"
        );
    }
    // An image whose size is not a whole number of sectors.
    let odd = w.join("odd.img");
    fs::write(&odd, vec![1u8; 1000]).unwrap();
    let (ok, err) = agent_run(
        &base(
            "unix:/nonexistent.sock",
            st,
            &format!("d0={}", odd.display()),
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert!(!ok);
    assert!(err.contains("multiple of 512"), "{err}");
    assert_eq!(
        fs::read(&img).unwrap(),
        vec![0x5au8; 1 << 20],
        "data untouched"
    );
    assert!(!mnt.exists(), "nothing mounted or made for a refused run");
}

/// Bad input met at run time: a disk whose size differs from the target's copy, a backing path
/// that is not a disk, a tag for a group the agent does not serve. Each is reported clearly and
/// the target's copy is untouched.
#[test]
fn runtime_mismatches_are_reported_and_touch_nothing() {
    if !can_run() {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let img = w.join("disk.img");
    let original: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(&img, &original).unwrap();
    let mut mtd = Mtd::start(w);
    {
        let mut agent = Agent::start(w, "g8", &[("d0", &img)], &mtd.target(), &[]);
        agent.wait_caught_up(std::time::Duration::from_secs(60));
        // A tag for another group is refused before anything is inserted.
        let out = Command::new(bin("rewind-agent"))
            .arg("tag")
            .arg("--state-dir")
            .arg(&agent.state)
            .args(["--name", "t", "--group", "other"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("serves group g8, not other"), "{err}");
        agent.stop();
    }

    // The same group from a 16 MiB image: the target refuses the session and says why; the
    // agent keeps retrying (an operator fixes the size or the group) and touches nothing.
    let big = w.join("big.img");
    fs::write(&big, vec![0xeeu8; 16 << 20]).unwrap();
    let other = w.join("other");
    fs::create_dir(&other).unwrap();
    {
        let agent = Agent::start(&other, "g8", &[("d0", &big)], &mtd.target(), &[]);
        let t0 = std::time::Instant::now();
        let err = loop {
            if let Some(e) = agent.status().last_error {
                break e;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "no error reported"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(err.contains("size") || err.contains("bytes"), "{err}");
        assert!(!agent.status().connected);
    }

    // A backing path that is a directory.
    let (ok, err) = agent_run(&[
        "--group",
        "g9",
        "--disk",
        &format!("d0={}", w.display()),
        "--target",
        &mtd.target(),
        "--state-dir",
        other.join("agent-state").to_str().unwrap(),
        "--mount-dir",
        other.join("m2").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains(&w.display().to_string()), "{err}");

    mtd.stop();
    let latest = w.join("latest.img");
    mtd.dump("g8", "d0", "latest", &latest);
    assert_eq!(
        fs::read(&latest).unwrap(),
        original,
        "the target's copy is untouched"
    );
}
