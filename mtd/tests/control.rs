//! The control API through the `rewind` CLI: groups, points, overlays, and the errors a user sees.

mod common;

use common::*;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn groups_points_and_overlays() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "uring", &[]);
    let wl = Workload {
        group: "web".into(),
        disks: vec!["sda:8MiB".into(), "sdb:4MiB".into()],
        seed: 7,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(wl.run_cmd(&d.target(), "2MiB").args(["--tag-every", "100"]));

    // Groups: table and JSON agree with the offline inspector.
    let table = run_ok(d.rewind_cmd().arg("groups"));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("GROUP"), "{text}");
    assert!(
        text.contains("web") && text.contains("sda (8.0 MiB)"),
        "{text}"
    );
    let g = json(&run_ok(d.rewind_cmd().args(["--json", "groups"])));
    let offline = inspect(&d.data_dir);
    assert_eq!(
        g["groups"][0]["durable_seq"],
        group_json(&offline, "web")["durable_seq"]
    );
    assert_eq!(g["groups"][0]["durable_seq"], 512);

    // Points: oldest, newest and the tags.
    let p = json(&run_ok(d.rewind_cmd().args(["--json", "points", "web"])));
    assert_eq!(p["newest"]["seq"], 512);
    assert_eq!(p["oldest"]["seq"], 1);
    let tags: Vec<&str> = p["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tags.len() >= 5, "tags: {tags:?}");
    let text = String::from_utf8_lossy(&run_ok(d.rewind_cmd().args(["points", "web"])).stdout)
        .into_owned();
    assert!(
        text.contains("crash-consistent point") && text.contains("tag:"),
        "{text}"
    );

    // Overlays: create at a tag, list, refuse duplicates and bad names, delete.
    let tag = tags[1];
    let o = json(&run_ok(d.rewind_cmd().args([
        "--json",
        "overlay",
        "create",
        "t1",
        &format!("web/sda@tag:{tag}"),
    ])));
    assert_eq!(o["name"], "t1");
    assert_eq!(o["seq"], p["tags"][1]["seq"]);
    assert_eq!(o["size_bytes"], 8 << 20);
    let list = json(&run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])));
    assert_eq!(list.as_array().unwrap().len(), 1);
    let dup = run(d.rewind_cmd().args(["overlay", "create", "t1", "web/sda"]));
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    let bad = run(d
        .rewind_cmd()
        .args(["overlay", "create", "../x", "web/sda"]));
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("overlay name"), "{}", stderr(&bad));
    assert!(work.path().join("data/overlays/t1/overlay.json").exists());

    // An overlay survives a restart (and keeps its point).
    let mut d = d;
    d.terminate();
    d.restart();
    let list = json(&run_ok(d.rewind_cmd().args(["--json", "overlay", "list"])));
    assert_eq!(list[0]["name"], "t1");
    assert_eq!(list[0]["seq"], o["seq"]);

    // Retention can change at run time, durably.
    run_ok(d.rewind_cmd().args(["retention", "web", "2h"]));
    let bad = run(d.rewind_cmd().args(["retention", "web", "soon"]));
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("bad retention"), "{}", stderr(&bad));
    assert_eq!(group_json(&inspect(&d.data_dir), "web")["retention"], "2h");

    run_ok(d.rewind_cmd().args(["overlay", "delete", "t1"]));
    assert!(!work.path().join("data/overlays/t1").exists());
    let gone = run(d.rewind_cmd().args(["overlay", "delete", "t1"]));
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("no overlay named t1"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn clear_errors() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let wl = Workload {
        group: "db".into(),
        disks: vec!["sda:4MiB".into()],
        seed: 1,
        pattern: "seq",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "1MiB"));

    let cases: &[(&[&str], &str)] = &[
        (&["points", "nosuch"], "unknown group nosuch"),
        (
            &["overlay", "create", "o1", "nosuch/sda"],
            "unknown group nosuch",
        ),
        (&["overlay", "create", "o1", "db/sdz"], "unknown disk sdz"),
        (&["overlay", "create", "o1", "db/sda@tag:nope"], "tag:nope"),
        (
            &["overlay", "create", "o1", "db/sda@yesterday"],
            "yesterday",
        ),
        (&["overlay", "create", "o1", "db"], "export name"),
        (&["detach", "/dev/loop999"], "not attached by rewind"),
        (&["umount", "/tmp"], "not a rewind mount"),
        (&["attach", "db/sda"], "--views"),
    ];
    for (args, want) in cases {
        let out = run(d.rewind_cmd().args(*args));
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = stderr(&out);
        assert!(e.starts_with("rewind: "), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: want {want:?} in {e}");
    }
    assert!(!work.path().join("data/overlays/o1").exists());

    // No daemon at the socket: say so, and how to point at one.
    let out = run(std::process::Command::new(bin("rewind")).args([
        "--control",
        "/nonexistent/mtd.sock",
        "groups",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is `rewind-mtd serve` running?"),
        "{}",
        stderr(&out)
    );

    // A second daemon may not take over a live control socket.
    let work2 = tempdir();
    let out = run(std::process::Command::new(bin("rewind-mtd"))
        .args([
            "serve",
            "--nbd-listen",
            "none",
            "--nbd-unix",
            "none",
            "--unix",
        ])
        .arg(work2.path().join("a.sock"))
        .arg("--data-dir")
        .arg(work2.path().join("data"))
        .arg("--control")
        .arg(&d.control));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another rewind-mtd serves the control API"),
        "{}",
        stderr(&out)
    );
}
