//! Attacks by local users and bad input on the control API, the CLI, the data directory and the
//! view tree, each shown refused with nothing changed (issue 10: findings 3, 4, 5 and 8).
//!
//! Runs as root (it switches to `nobody`, and to `nobody` with the access group, with runuser and
//! setpriv); requests are raw HTTP over the control socket from /usr/bin/python3, so that they can
//! say exactly what an attacker would (`..` in paths, names the CLI would refuse).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The access group's gid (the daemon creates the group when missing, so look after a start).
fn access_gid() -> u32 {
    let out = run_ok(Command::new("getent").args(["group", "rewind"]));
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// Who runs a request: root, `nobody`, or `nobody` with the access group as its only group.
#[derive(Clone, Copy, Debug)]
enum Who {
    Root,
    Nobody,
    Member,
}

impl Who {
    fn command(self, program: &str) -> Command {
        match self {
            Who::Root => Command::new(program),
            Who::Nobody => {
                let mut c = Command::new("runuser");
                c.args(["-u", "nobody", "--", program]);
                c
            }
            Who::Member => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=65534",
                    &format!("--regid={}", access_gid()),
                    "--clear-groups",
                    "--",
                    program,
                ]);
                c
            }
        }
    }
}

const HTTP: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-FAILED", e.errno, e.strerror)
    sys.exit(0)
m, p, b = sys.argv[2], sys.argv[3], sys.argv[4].encode()
s.sendall((f"{m} {p} HTTP/1.1\r\nHost: rewind\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(b)}\r\nConnection: close\r\n\r\n").encode() + b)
d = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    d += c
sys.stdout.write(d.decode(errors="replace"))
"#;

/// Send one request as `who`; the status (0 when the connection itself failed) and the text.
fn http(who: Who, sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let out = run(who
        .command("/usr/bin/python3")
        .args(["-c", HTTP])
        .arg(sock)
        .args([method, path, body]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client as {who:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text.starts_with("CONNECT-FAILED") {
        return (0, text);
    }
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

/// Let other users traverse (not list) the work directory, as a socket directory would be.
fn traversable(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
}

/// Every path under `dir` with its mode and size: "nothing changed" is this, equal before and after.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u32, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            // Journal segments are preallocated and sealed by time: sizes of files may change
            // without any request; what must not change is which files exist.
            let size = if m.is_dir() {
                0
            } else {
                u64::from(m.is_file())
            };
            out.insert(p, (m.mode(), size));
        }
    }
    out
}

fn small_group(d: &Mtd, group: &str) {
    let wl = Workload {
        group: group.into(),
        disks: vec!["sda:4MiB".into()],
        seed: 3,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    run_ok(&mut wl.run_cmd(&d.target(), "1MiB"));
}

fn failover_state(d: &Mtd, group: &str) -> serde_json::Value {
    let (st, text) = http(
        Who::Root,
        &d.control,
        "GET",
        &format!("/v1/groups/{group}/failover"),
        "",
    );
    assert_eq!(st, 200, "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

fn group_names(d: &Mtd) -> Vec<String> {
    let out = run_ok(d.rewind_cmd().args(["--json", "groups"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

/// Finding 4: any local user created a group, set a boot command and ran it as root. Now the
/// socket is root:rewind 0660, and even a user who can reach it (a socket made world-writable by
/// mistake, or an inherited descriptor) is checked by SO_PEERCRED: 403, nothing changed. Members
/// of the access group read, and change nothing.
#[test]
fn the_control_api_checks_every_peer() {
    let work = tempdir();
    traversable(work.path());
    let d = Mtd::start_engine(work.path(), "uring", &[]);
    small_group(&d, "web");
    let meta = std::fs::metadata(&d.control).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), access_gid());
    let marker = work.path().join("pwned");
    let boot = format!(r#"{{"boot": "touch {}"}}"#, marker.display());
    let adopt = r#"{"disks": ["sda=/dev/null"], "agent": "evil"}"#;

    // The file mode stops nobody at connect.
    let (st, text) = http(Who::Nobody, &d.control, "GET", "/v1/groups", "");
    assert_eq!(st, 0, "nobody connected: {text}");
    assert!(text.contains("13"), "not EACCES: {text}");

    // Reachable anyway: the peer check refuses every request, reads included.
    std::fs::set_permissions(&d.control, std::fs::Permissions::from_mode(0o666)).unwrap();
    for (m, p, b) in [
        ("GET", "/v1/groups", ""),
        ("POST", "/v1/groups/web/failover/configure", boot.as_str()),
        ("POST", "/v1/groups/web/failover/test", "{}"),
        ("POST", "/v1/groups/evil/adopt", adopt),
    ] {
        let (st, text) = http(Who::Nobody, &d.control, m, p, b);
        assert_eq!(st, 403, "nobody: {m} {p}: {text}");
        assert!(text.contains("neither root nor in group rewind"), "{text}");
    }

    // A member of the access group reads, and changes nothing.
    let (st, text) = http(Who::Member, &d.control, "GET", "/v1/groups", "");
    assert_eq!(st, 200, "member GET: {text}");
    assert!(text.contains("\"web\""), "{text}");
    for (m, p, b) in [
        ("POST", "/v1/groups/web/failover/configure", boot.as_str()),
        ("POST", "/v1/groups/web/failover/test", "{}"),
        ("POST", "/v1/groups/evil/adopt", adopt),
        ("POST", "/v1/groups/web/retention", r#"{"retention": "1s"}"#),
        ("DELETE", "/v1/overlays/x", ""),
    ] {
        let (st, text) = http(Who::Member, &d.control, m, p, b);
        assert_eq!(st, 403, "member: {m} {p}: {text}");
        assert!(text.contains("may only read"), "{text}");
    }

    // Nothing changed: no boot command, no group, no marker; the refusals are logged.
    assert!(failover_state(&d, "web")["state"]["boot"].is_null());
    assert_eq!(group_names(&d), vec!["web".to_string()]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!marker.exists(), "the boot command ran");
    let log = d.log_text();
    assert!(log.contains("control API request refused"), "{log}");
    // Root still may.
    let (st, text) = http(
        Who::Root,
        &d.control,
        "POST",
        "/v1/groups/web/failover/configure",
        &boot,
    );
    assert_eq!(st, 200, "{text}");
}

/// Finding 3: `POST /v1/groups/../adopt` emptied the data dir and `..%2F..%2FX` removed a
/// directory outside it. Names in paths and bodies are refused (400) before anything touches a
/// path; the CLI and the offline adopt refuse them too.
#[test]
fn path_names_are_refused_before_touching_anything() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "uring", &[]);
    small_group(&d, "web");
    let victim = work.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), b"keep").unwrap();
    let img = work.path().join("src.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let adopt = format!(r#"{{"disks": ["sda={}"], "agent": "a1"}}"#, img.display());
    let before = listing(&d.data_dir);
    for (m, p, b) in [
        ("POST", "/v1/groups/../adopt", adopt.as_str()),
        ("POST", "/v1/groups/..%2F..%2Fvictim/adopt", adopt.as_str()),
        ("POST", "/v1/groups/..%2F..%2Fvictim/failover/cleanup", "{}"),
        ("GET", "/v1/groups/..%2F..%2Fvictim/points", ""),
        (
            "POST",
            "/v1/groups/.%2E/retention",
            r#"{"retention": "1h"}"#,
        ),
        ("DELETE", "/v1/overlays/..%2F..%2Fvictim", ""),
        (
            "POST",
            "/v1/groups/web/adopt",
            &format!(r#"{{"disks": ["..={}"], "agent": "a1"}}"#, img.display()),
        ),
        (
            "POST",
            "/v1/overlays",
            r#"{"name": "../x", "export": "web/sda"}"#,
        ),
        (
            "POST",
            "/v1/overlays",
            r#"{"name": "o", "export": "../sda"}"#,
        ),
        ("POST", "/v1/attachments", r#"{"export": "web/..@tag:x"}"#),
        (
            "POST",
            "/v1/groups/web/drain",
            r#"{"tag": "../x", "timeout_secs": 1}"#,
        ),
    ] {
        let (st, text) = http(Who::Root, &d.control, m, p, b);
        assert_eq!(st, 400, "{m} {p} {b}: {text}");
    }
    assert!(
        victim.join("keep").exists(),
        "the victim directory was removed"
    );
    assert_eq!(listing(&d.data_dir), before, "the data directory changed");
    assert_eq!(group_names(&d), vec!["web".to_string()]);

    // A plan's name makes its log directory's name: `../../x` would put it outside the data dir.
    let plan = |name: &str, timeout: &str| {
        let text = format!(
            "name = \"{name}\"\n[[boot_group]]\nname = \"a\"\n[[boot_group.machine]]\n\
             name = \"m\"\ngroup = \"web\"\nboot = \"true\"\nhealth = {{ command = \"true\" }}\n\
             timeout_secs = {timeout}\n"
        );
        serde_json::json!({ "path": "p.toml", "text": text, "mode": "test" }).to_string()
    };
    for (body, want) in [
        (plan("../../planned", "5"), "plan name"),
        (plan("p", "86401"), "timeout_secs must be at most"),
    ] {
        let (st, text) = http(Who::Root, &d.control, "POST", "/v1/plans/run", &body);
        assert_eq!(st, 400, "{text}");
        assert!(text.contains(want), "{text}");
    }
    let outside = |e: std::fs::DirEntry| e.file_name().to_string_lossy().starts_with("planned");
    assert!(!work.path().read_dir().unwrap().any(|e| outside(e.unwrap())));
    assert_eq!(listing(&d.data_dir), before, "the data directory changed");

    // The CLI refuses before sending anything.
    for args in [
        vec!["adopt", "..", "--agent", "a1", "--disk", "sda=/x"],
        vec!["adopt", "../../victim", "--agent", "a1", "--disk", "sda=/x"],
        vec!["adopt", "g", "--agent", "a1", "--disk", "../x=/x"],
        vec!["adopt", "g", "--agent", "..", "--disk", "sda=/x"],
        vec!["points", ".."],
        vec!["failover", "cleanup", ".."],
        vec!["overlay", "delete", "../x"],
        vec!["attach", "../sda"],
    ] {
        let out = run(d.rewind_cmd().args(&args));
        assert!(!out.status.success(), "rewind {args:?} succeeded");
    }
    let out = run(d
        .rewind_cmd()
        .args(["adopt", "..", "--agent", "a1", "--disk", "sda=/x"]));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("reserved"), "{e}");
    assert!(victim.join("keep").exists());
    assert_eq!(listing(&d.data_dir), before, "the data directory changed");

    // The offline adopt too.
    let data2 = work.path().join("data2");
    let out = run(Command::new(bin("rewind-mtd"))
        .args(["adopt", "--data-dir"])
        .arg(&data2)
        .args(["--group", "..", "--agent", "a1", "--disk"])
        .arg(format!("sda={}", img.display())));
    assert!(!out.status.success());
    assert!(
        !data2.exists(),
        "the offline adopt made {}",
        data2.display()
    );
}

/// Finding 8: over-long names replicated but could never fail over. Every entry point refuses
/// them with the limit, and no group is made.
#[test]
fn over_long_names_are_refused_with_their_limit() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "uring", &[]);
    small_group(&d, "web");
    let g49 = "g".repeat(49);
    let (st, text) = http(
        Who::Root,
        &d.control,
        "GET",
        &format!("/v1/groups/{g49}/points"),
        "",
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("48"), "{text}");
    let out = run(d.rewind_cmd().args(["points", &g49]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("48"));
    let out =
        run(d
            .rewind_cmd()
            .args(["adopt", "g", "--agent", &"a".repeat(65), "--disk", "sda=/x"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64"));
    let (st, text) = http(
        Who::Root,
        &d.control,
        "POST",
        "/v1/overlays",
        &format!(r#"{{"name": "{}", "export": "web/sda"}}"#, "o".repeat(241)),
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("240"), "{text}");
    let (st, text) = http(
        Who::Root,
        &d.control,
        "POST",
        "/v1/groups/web/fence",
        &format!(r#"{{"reason": "{}"}}"#, "r".repeat(5000)),
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("4096"), "{text}");
    // An agent's HELLO with a 49-byte group is refused by the target: no group is made.
    let wl = Workload {
        group: g49.clone(),
        disks: vec!["sda:1MiB".into()],
        seed: 1,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    let out = run(&mut wl.run_cmd(&d.target(), "64KiB"));
    assert!(!out.status.success(), "a 49-byte group replicated");
    let long_disk = Workload {
        group: "g2".into(),
        disks: vec![format!("{}:1MiB", "d".repeat(49))],
        ..wl.clone()
    };
    let out = run(&mut long_disk.run_cmd(&d.target(), "64KiB"));
    assert!(!out.status.success(), "a 49-byte disk replicated");
    assert_eq!(group_names(&d), vec!["web".to_string()]);
    assert!(!d.data_dir.join("groups/g2").exists());
    // A 48-byte group (and 48-byte disk) replicates, and its test failover names fit.
    let g48 = "g_".repeat(24);
    let wl = Workload {
        group: g48.clone(),
        disks: vec![format!("{}:1MiB", ":".repeat(48))],
        ..wl
    };
    run_ok(&mut wl.run_cmd(&d.target(), "64KiB"));
    let mut names = group_names(&d);
    names.sort();
    assert_eq!(names, vec![g48.clone(), "web".to_string()]);
    run_ok(d.rewind_cmd().args(["failover", "test", &g48]));
    run_ok(d.rewind_cmd().args(["failover", "cleanup", &g48]));
}

/// Retention strings wrapped to milliseconds (2^64 ms became 0); now they are refused, and the
/// retention stays as it was.
#[test]
fn retention_overflow_is_refused() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "uring", &[]);
    small_group(&d, "web");
    let retention = |d: &Mtd| {
        let out = run_ok(d.rewind_cmd().args(["--json", "groups"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["groups"][0]["retention"].clone()
    };
    let before = retention(&d);
    for bad in [
        "18446744073709551616ms",
        "18446744073709551615s",
        "11years",
        "0s",
    ] {
        let (st, text) = http(
            Who::Root,
            &d.control,
            "POST",
            "/v1/groups/web/retention",
            &format!(r#"{{"retention": "{bad}"}}"#),
        );
        assert_eq!(st, 400, "{bad}: {text}");
        assert!(!run(d.rewind_cmd().args(["retention", "web", bad]))
            .status
            .success());
    }
    assert_eq!(retention(&d), before);
    let (st, text) = http(
        Who::Root,
        &d.control,
        "POST",
        "/v1/groups/web/drain",
        r#"{"tag": "t", "timeout_secs": 18446744073709551615}"#,
    );
    assert_eq!(st, 400, "{text}");
}

/// Finding 5: the data dir was 0755 and its files 0644. An existing open data dir is made 0700
/// at start; everything the daemon writes is private.
#[test]
fn the_data_directory_is_private() {
    let work = tempdir();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Mtd::start_engine(work.path(), "uring", &[]);
    small_group(&d, "web");
    run_ok(d.rewind_cmd().args(["overlay", "create", "o1", "web/sda"]));
    run_ok(
        d.rewind_cmd()
            .args(["failover", "configure", "web", "--boot", "true"]),
    );
    d.terminate();
    assert!(d.log_text().contains("making it 0700"), "{}", d.log_text());
    let all = listing(&data);
    assert!(all.len() > 5, "{all:?}");
    assert_eq!(
        std::fs::metadata(&data).unwrap().mode() & 0o777,
        0o700,
        "data dir"
    );
    for (p, (mode, _)) in &all {
        assert_eq!(
            mode & 0o077,
            0,
            "{} is mode {:o}: open to other users",
            p.display(),
            mode & 0o777
        );
    }
}

/// Finding 5: the view tree was mounted allow_other with 0444 images. Now it is root:rewind,
/// directories 0750 and images 0440, enforced by the kernel: nobody cannot read it, a member can.
#[test]
fn the_view_tree_is_for_root_and_the_access_group() {
    let work = tempdir();
    traversable(work.path());
    let views = work.path().join("views");
    let d = Mtd::start_engine(work.path(), "uring", &["--views", views.to_str().unwrap()]);
    small_group(&d, "web");
    let img = views.join("web/sda/latest.img");
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o440);
    assert_eq!(meta.gid(), access_gid());
    let root = std::fs::metadata(&views).unwrap();
    assert_eq!(root.mode() & 0o777, 0o750);
    let cat = |who: Who| {
        run(who
            .command("head")
            .args(["-c", "4096"])
            .arg(&img)
            .stdout(std::process::Stdio::null()))
    };
    let out = cat(Who::Nobody);
    assert!(!out.status.success(), "nobody read a replica");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!run(Who::Nobody.command("ls").arg(&views)).status.success());
    let out = cat(Who::Member);
    assert!(
        out.status.success(),
        "a member cannot read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reading is all a member may do with a point.
    let out = run(Who::Member
        .command("dd")
        .args(["if=/dev/zero", "bs=4096", "count=1", "conv=notrunc"])
        .arg(format!("of={}", img.display())));
    assert!(!out.status.success(), "a member wrote to a point's image");
}

/// Adopted groups had no owner (the first certificate to say HELLO took them): the agent named
/// at adopt time owns it, and an adopt without one is refused.
#[test]
fn an_adopted_group_is_owned_by_the_named_agent() {
    let work = tempdir();
    let img = work.path().join("src.img");
    std::fs::write(&img, vec![1u8; 1 << 20]).unwrap();
    let data = work.path().join("data");
    run_ok(
        Command::new(bin("rewind-mtd"))
            .args(["adopt", "--data-dir"])
            .arg(&data)
            .args(["--group", "old", "--agent", "site-a-agent", "--disk"])
            .arg(format!("sda={}", img.display())),
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("groups/old/group.json")).unwrap())
            .unwrap();
    assert_eq!(m["owner"], "site-a-agent");
    assert_eq!(m["adopted"], true);
    let out = run(Command::new(bin("rewind-mtd"))
        .args(["adopt", "--data-dir"])
        .arg(&data)
        .args(["--group", "other", "--disk"])
        .arg(format!("sda={}", img.display())));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent"));

    let d = Mtd::start_engine(work.path(), "uring", &[]);
    let (st, text) = http(
        Who::Root,
        &d.control,
        "POST",
        "/v1/groups/new/adopt",
        &format!(r#"{{"disks": ["sda={}"]}}"#, img.display()),
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("--agent"), "{text}");
    // Another agent's HELLO for the adopted group is refused.
    let wl = Workload {
        group: "old".into(),
        disks: vec!["sda:1MiB".into()],
        seed: 1,
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    };
    let out = run(wl
        .run_cmd(&d.target(), "64KiB")
        .args(["--agent", "intruder"]));
    assert!(
        !out.status.success(),
        "another agent replicated into the adopted group"
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("forbidden") || e.contains("Forbidden"),
        "not refused as not the owner: {e}"
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("groups/old/group.json")).unwrap())
            .unwrap();
    assert_eq!(m["owner"], "site-a-agent");
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `rewind mount` mounted replica filesystems without nosuid,nodev: now nosuid,nodev,noexec by
/// default, and `-o exec` relaxes one explicitly.
#[test]
fn rewind_mount_is_nosuid_nodev_noexec() {
    let work = tempdir();
    let views = work.path().join("views");
    let d = Mtd::start_engine(work.path(), "uring", &["--views", views.to_str().unwrap()]);
    let disk = work.path().join("disk.img");
    run_ok(Command::new("truncate").args(["-s", "16M"]).arg(&disk));
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk));
    run_ok(
        Command::new(bin("rewind-loadgen"))
            .args(["image", "--connect", &d.target()])
            .args(["--group", "fs", "--disk", "sda", "--file"])
            .arg(&disk),
    );
    let dir = work.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let opts = |dir: &Path| {
        let dir = dir.canonicalize().unwrap();
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(dir.to_str().unwrap()))
            .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
            .unwrap_or_else(|| panic!("{} is not mounted", dir.display()))
    };
    run_ok(d.rewind_cmd().args(["mount", "fs/sda"]).arg(&dir));
    let guard = Unmount(dir.clone());
    let o = opts(&dir);
    for want in ["nosuid", "nodev", "noexec"] {
        assert!(o.split(',').any(|x| x == want), "{want} missing: {o}");
    }
    run_ok(d.rewind_cmd().arg("umount").arg(&dir));
    std::mem::forget(guard);
    run_ok(
        d.rewind_cmd()
            .args(["mount", "-o", "exec", "fs/sda"])
            .arg(&dir),
    );
    let _guard = Unmount(dir.clone());
    let o = opts(&dir);
    assert!(!o.split(',').any(|x| x == "noexec"), "{o}");
    assert!(o.split(',').any(|x| x == "nosuid"), "{o}");
    run_ok(d.rewind_cmd().arg("umount").arg(&dir));
}
