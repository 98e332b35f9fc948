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
