//! Long-term retention end to end: a real `rewind-mtd serve` and `rewind-agent run` on an ext4
//! disk, a retention window of seconds and a test-only tier clock (`--ltr-test-hour`: an "hour"
//! lasts 2 s, so hourly points come every 2 s and a "day" of them is kept 48 s).
//!
//! A model records the protected disk after each round of file writes (each round followed by
//! quiet periods, so that a period's kept point is exactly the state after the round). Kept
//! points outlive the journal window (their seqs fall below the horizon) and read back
//! byte-exact through NBD, and mounted (`rewind mount`) their files are those of their round.
//! Against a `file://` store and against moto's S3 server. Two groups with the same data store
//! its chunks once; garbage collection deletes exactly the chunks no manifest names; a damaged
//! chunk is an error naming it, never data.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::free_port;
use common::*;
use serde_json::Value;

const DISK: u64 = 32 << 20;
const LONG: Duration = Duration::from_secs(120);
/// The test's "hour" (and so the period between kept points).
const HOUR: &str = "2s";
const HOUR_MS: u64 = 2000;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A target with a view tree, a tier clock of `HOUR`, archiving checked every second.
fn target(w: &Path, store: &str, extra: &[&str]) -> Mtd {
    let views = w.join("views");
    let args: Vec<&str> = [
        &[
            "--views",
            views.to_str().unwrap(),
            "--seal-after",
            "1s",
            "--ltr-store",
            store,
            "--ltr-interval",
            "1s",
            "--ltr-test-hour",
            HOUR,
        ][..],
        extra,
    ]
    .concat();
    Mtd::start_with(w, &args)
}

/// Retention `window_secs`, hourly points for one (test) day.
fn set_policy(mtd: &Mtd, group: &str, window_secs: u64) {
    let policy = format!(
        r#"{{"name":"ltr","version":1,"rpo_target_secs":60,"retention_secs":{window_secs},
        "level":3,"ltr_hourly_days":1}}"#
    );
    let (code, body) = mtd.control_put(&format!("/v1/groups/{group}/policy"), &policy);
    assert_eq!(code, 200, "{body}");
}

/// One protected ext4 disk and what it held after each round.
struct Source {
    agent: Agent,
    dir: PathBuf,
    /// (seq at the end of the round, the disk's bytes then, the round's file name and content)
    rounds: Vec<(u64, Vec<u8>, String, Vec<u8>)>,
}

impl Source {
    fn start(w: &Path, mtd: &Mtd, group: &str, seed_img: Option<&Path>) -> Source {
        let dir = w.join(group);
        fs::create_dir_all(&dir).unwrap();
        let img = dir.join("disk.img");
        match seed_img {
            Some(s) => {
                fs::copy(s, &img).unwrap();
            }
            None => {
                fs::File::create(&img)
                    .and_then(|f| f.set_len(DISK))
                    .unwrap();
                run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
            }
        }
        let agent = Agent::start(&dir, group, &[("d0", &img)], &mtd.target(), &[]);
        agent.wait_caught_up(LONG);
        Source {
            agent,
            dir,
            rounds: Vec::new(),
        }
    }

    /// Write `round-N.bin` (seeded random bytes) through the protected device, wait until the
    /// target has it, and record the disk.
    fn round(&mut self, mtd: &Mtd, group: &str, seed: u64) {
        let name = format!("round-{seed}.bin");
        let content = Rng::new(seed * 2 + 1).bytes(300 << 10);
        let mnt = self.dir.join("mnt");
        let mut m = Mount::new(&self.agent.link("d0"), &mnt);
        fs::write(mnt.join(&name), &content).unwrap();
        m.umount();
        self.agent.wait_caught_up(LONG);
        let seq = points(mtd, group)["newest"]["seq"].as_u64().unwrap();
        let bytes = read_direct(&self.agent.link("d0"), &self.dir.join("model.img"));
        self.rounds.push((seq, bytes, name, content));
        // Quiet for more than a period: the next period's kept point is this state.
        std::thread::sleep(Duration::from_millis(2 * HOUR_MS + 500));
    }
}

/// The device's bytes, read past the page cache (ext4 writes file data around the block
/// device's cache, so a buffered read could be stale).
fn read_direct(dev: &Path, tmp: &Path) -> Vec<u8> {
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", dev.display()))
            .arg(format!("of={}", tmp.display()))
            .args(["bs=1M", "iflag=direct", "status=none"]),
    );
    let b = fs::read(tmp).unwrap();
    fs::remove_file(tmp).unwrap();
    b
}

fn points(mtd: &Mtd, group: &str) -> Value {
    mtd.rewind_json(&["points", group])
}

fn long_term_seqs(mtd: &Mtd, group: &str) -> BTreeSet<u64> {
    points(mtd, group)["long_term"]
        .as_array()
        .map(|a| a.iter().map(|p| p["seq"].as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// The disk at `point` read through NBD (nbdcopy) into `out`.
fn nbd_read(mtd: &Mtd, export: &str, out: &Path) -> std::process::Output {
    let _ = fs::remove_file(out);
    run(Command::new("nbdcopy").arg(mtd.nbd_uri(export)).arg(out))
}

/// Every round's kept point outlives the window and reads back exactly; an old one mounts
/// with its round's files.
fn check_rounds(mtd: &Mtd, src: &Source, group: &str, w: &Path) {
    let first = src.rounds[0].0;
    wait_until("the horizon to pass the first round's point", LONG, || {
        points(mtd, group)["horizon_seq"].as_u64().unwrap() > first
    });
    let lt = long_term_seqs(mtd, group);
    let horizon = points(mtd, group)["horizon_seq"].as_u64().unwrap();
    let out = w.join("read.img");
    let mut outlived = 0;
    for (seq, bytes, _, _) in &src.rounds {
        assert!(
            lt.contains(seq),
            "round point seq {seq} was not kept: {lt:?}\n{}",
            mtd.log_tail(40)
        );
        if *seq < horizon {
            outlived += 1;
        }
        let r = nbd_read(mtd, &format!("{group}/d0@seq:{seq}"), &out);
        assert!(r.status.success(), "nbdcopy seq:{seq}: {r:?}");
        assert!(
            fs::read(&out).unwrap() == *bytes,
            "long-term point seq {seq} differs from the disk as it was"
        );
    }
    assert!(
        outlived >= 1,
        "no kept point is older than the horizon {horizon}"
    );
    // A point between two kept ones, older than the horizon, resolves to the older kept point.
    // (Unless an "hour" ended right after the next round's first write: then s0+1 is itself
    // the kept point of that hour, and holds that write.)
    let (s0, b0, name0, content0) = &src.rounds[0];
    let r = nbd_read(mtd, &format!("{group}/d0@seq:{}", s0 + 1), &out);
    assert!(r.status.success(), "nbdcopy seq:{}: {r:?}", s0 + 1);
    let kept_now = long_term_seqs(mtd, group);
    if s0 + 1 < src.rounds[1].0 && s0 + 1 < horizon && !kept_now.contains(&(s0 + 1)) {
        assert!(
            fs::read(&out).unwrap() == *b0,
            "seq:{} should read as the kept point seq {s0}: kept {kept_now:?}",
            s0 + 1
        );
    }
    // The FUSE tree lists the kept point in the disk's at/ and reads it as it was.
    let at = mtd.views.as_ref().unwrap().join(group).join("d0/at");
    let listed: BTreeSet<String> = fs::read_dir(&at)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let name = format!("seq:{s0}.img");
    assert!(listed.contains(&name), "{name} not in {at:?}: {listed:?}");
    assert!(
        fs::read(at.join(&name)).unwrap() == *b0,
        "{name} read through FUSE differs from the disk as it was"
    );
    // Mounted: the first round's file is there, the second's is not.
    let mnt = w.join(format!("lt-{group}"));
    fs::create_dir_all(&mnt).unwrap();
    let _g = RewindMount(mtd, mnt.clone());
    run_ok(
        mtd.rewind_cmd()
            .args(["mount", &format!("{group}/d0@seq:{s0}")])
            .arg(&mnt),
    );
    assert_eq!(fs::read(mnt.join(name0)).unwrap(), *content0);
    assert!(!mnt.join(&src.rounds[1].2).exists());

    // A test failover to it: the test disk is a writable copy of the long-term point.
    let r = mtd.rewind_json(&["failover", "test", group, "--point", &format!("seq:{s0}")]);
    assert_eq!(r["test"]["seq"].as_u64(), Some(*s0), "{r}");
    let uri = r["test"]["disks"][0]["nbd_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = w.join("test-failover.img");
    let _ = fs::remove_file(&copy);
    run_ok(Command::new("nbdcopy").arg(&uri).arg(&copy));
    assert!(
        fs::read(&copy).unwrap() == *b0,
        "the test disk differs from the kept point"
    );
    mtd.rewind(&["failover", "cleanup", group]);
}

/// `rewind umount` when dropped.
struct RewindMount<'a>(&'a Mtd, PathBuf);
impl Drop for RewindMount<'_> {
    fn drop(&mut self) {
        let _ = self.0.rewind_cmd().arg("umount").arg(&self.1).output();
        umount_lazy(&self.1);
    }
}

/// Chunk and manifest files of a `file://` store.
fn store_files(root: &Path, sub: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.join(sub)];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Chunk hashes the manifests of a `file://` store name.
fn referenced(root: &Path) -> BTreeSet<String> {
    store_files(root, "points")
        .iter()
        .flat_map(|m| {
            let v: Value = serde_json::from_slice(&fs::read(root.join(m)).unwrap()).unwrap();
            v["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| {
                    c.as_str()
                        .filter(|c| !c.is_empty())
                        .map(|c| format!("chunks/{c}"))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A damaged chunk is an error that names it, never data (the cache is cold after a restart).
fn corrupt_chunk_is_reported(mtd: &mut Mtd, src: &Source, root: &Path, w: &Path) {
    let seq = src.rounds[0].0;
    let manifest = format!("points/g1/d0/{seq:020}.json");
    let v: Value = serde_json::from_slice(&fs::read(root.join(&manifest)).unwrap()).unwrap();
    let hash = v["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .find(|c| !c.is_empty())
        .unwrap()
        .to_string();
    mtd.stop();
    let chunk = root.join("chunks").join(&hash);
    let mut b = fs::read(&chunk).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x5a;
    fs::write(&chunk, &b).unwrap();
    mtd.restart();
    let r = nbd_read(mtd, &format!("g1/d0@seq:{seq}"), &w.join("bad.img"));
    assert!(!r.status.success(), "a corrupt chunk was served as data");
    let log = mtd.log_text();
    assert!(
        log.contains(&format!("chunks/{hash}")),
        "the error does not name the chunk: {}",
        mtd.log_tail(30)
    );
}

#[test]
fn a_file_store_keeps_points_and_reports_a_corrupt_chunk() {
    if !can_run() || !have_tools("ltr_corrupt", &["nbdcopy", "mkfs.ext4"]) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let root = w.join("ltr-store");
    let mut mtd = target(w, &format!("file://{}", root.display()), &[]);
    let mut src = Source::start(w, &mtd, "g1", None);
    set_policy(&mtd, "g1", 6);
    for seed in 1..=3 {
        src.round(&mtd, "g1", seed);
    }
    check_rounds(&mtd, &src, "g1", w);
    assert!(referenced(&root).is_subset(&store_files(&root, "chunks")));
    corrupt_chunk_is_reported(&mut mtd, &src, &root, w);
}

#[test]
fn two_groups_with_the_same_data_store_it_once() {
    if !can_run() || !have_tools("ltr_dedup", &["mkfs.ext4"]) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let root = w.join("ltr-store");
    let mtd = target(w, &format!("file://{}", root.display()), &[]);
    // One ext4 image with 2 MiB of data, protected twice.
    let seed = w.join("seed.img");
    fs::File::create(&seed)
        .and_then(|f| f.set_len(DISK))
        .unwrap();
    run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&seed));
    run_ok(
        Command::new("dd")
            .arg(format!("of={}", seed.display()))
            .args([
                "if=/dev/urandom",
                "bs=1M",
                "count=2",
                "seek=8",
                "conv=notrunc",
                "status=none",
            ]),
    );
    let _a = Source::start(w, &mtd, "ga", Some(&seed));
    set_policy(&mtd, "ga", 3600);
    wait_until("a kept point of ga", LONG, || {
        !long_term_seqs(&mtd, "ga").is_empty()
    });
    let after_a = store_files(&root, "chunks");
    let _b = Source::start(w, &mtd, "gb", Some(&seed));
    set_policy(&mtd, "gb", 3600);
    wait_until("a kept point of gb", LONG, || {
        !long_term_seqs(&mtd, "gb").is_empty()
    });
    let gb = store_files(&root, "points")
        .into_iter()
        .find(|k| k.starts_with("points/gb/"))
        .unwrap();
    let v: Value = serde_json::from_slice(&fs::read(root.join(&gb)).unwrap()).unwrap();
    let needed: BTreeSet<String> = v["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            c.as_str()
                .filter(|c| !c.is_empty())
                .map(|c| format!("chunks/{c}"))
        })
        .collect();
    assert!(
        needed.len() >= 32,
        "the point holds the 2 MiB of data: {}",
        needed.len()
    );
    assert!(
        needed.is_subset(&after_a),
        "gb's point stored {} chunks ga had already stored",
        needed.difference(&after_a).count()
    );
}

#[test]
fn garbage_collection_deletes_what_no_manifest_needs_and_nothing_else() {
    if !can_run() || !have_tools("ltr_gc", &["nbdcopy", "mkfs.ext4"]) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let root = w.join("ltr-store");
    // An "hour" of 500 ms: hourly points are kept for 12 s.
    let views = w.join("views");
    let mtd = Mtd::start_with(
        w,
        &[
            "--views",
            views.to_str().unwrap(),
            "--seal-after",
            "1s",
            "--ltr-store",
            &format!("file://{}", root.display()),
            "--ltr-interval",
            "1s",
            "--ltr-test-hour",
            "500ms",
        ],
    );
    let mut src = Source::start(w, &mtd, "g1", None);
    set_policy(&mtd, "g1", 4);
    // Each round replaces the last round's file: its chunks are needed only by its points.
    let mnt = src.dir.join("mnt");
    for seed in 10..13u64 {
        {
            let mut m = Mount::new(&src.agent.link("d0"), &mnt);
            for old in fs::read_dir(&mnt).unwrap().flatten() {
                if old.file_name().to_string_lossy().starts_with("round-") {
                    fs::remove_file(old.path()).unwrap();
                }
            }
            m.umount();
        }
        src.round(&mtd, "g1", seed);
    }
    let first = src.rounds[0].0;
    wait_until("the first round's point to be kept", LONG, || {
        long_term_seqs(&mtd, "g1").contains(&first)
    });
    // Within the grace period nothing unreferenced goes.
    let gc = mtd.rewind_json(&["ltr", "gc"]);
    assert_eq!(gc["chunks_deleted"], 0, "{gc}");
    // Once the first round's points expire (12 s after their periods), its chunks are garbage.
    wait_until("the first round's point to expire", LONG, || {
        let gc = mtd.rewind_json(&["ltr", "gc", "--grace", "0s"]);
        gc["manifests_deleted"].as_u64().unwrap() > 0
            && !long_term_seqs(&mtd, "g1").contains(&first)
    });
    let gc = mtd.rewind_json(&["ltr", "gc", "--grace", "0s"]);
    let chunks = store_files(&root, "chunks");
    let refs = referenced(&root);
    assert_eq!(
        chunks, refs,
        "after a collection with no grace, exactly the named chunks remain ({gc})"
    );
    // What is kept still reads back exactly.
    let (seq, bytes, _, _) = src.rounds.last().unwrap();
    assert!(long_term_seqs(&mtd, "g1").contains(seq));
    let out = w.join("last.img");
    let r = nbd_read(&mtd, &format!("g1/d0@seq:{seq}"), &out);
    assert!(r.status.success(), "{r:?}");
    assert!(fs::read(&out).unwrap() == *bytes);
}

/// moto's S3 server on a free loopback port, stopped by pid when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(w: &Path) -> Moto {
        let port = free_port();
        let log = fs::File::create(w.join("moto.log")).unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start moto_server");
        let m = Moto { child, port };
        wait_until("moto to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        m.create_bucket("rewind-ltr", false);
        m
    }

    /// Create `bucket`, with Object Lock enabled (which makes it versioned) if `lock`.
    fn create_bucket(&self, bucket: &str, lock: bool) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sf", "-X", "PUT"]);
        if lock {
            cmd.args(["-H", "x-amz-bucket-object-lock-enabled: true"]);
        }
        let out = run(cmd.arg(format!("http://127.0.0.1:{}/{bucket}", self.port)));
        assert!(
            out.status.success(),
            "creating the bucket {bucket}: {out:?}"
        );
    }

    fn url(&self) -> String {
        self.url_of("rewind-ltr")
    }

    fn url_of(&self, bucket: &str) -> String {
        format!(
            "s3://{bucket}?endpoint=http://127.0.0.1:{}&allow_http=true&region=us-east-1\
             &access_key_id=test&secret_access_key=test",
            self.port
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[test]
fn kept_points_outlive_the_window_on_s3() {
    if !can_run() || !have_tools("ltr_s3", &["nbdcopy", "mkfs.ext4", "moto_server", "curl"]) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let moto = Moto::start(w);
    let mtd = target(w, &moto.url(), &[]);
    let mut src = Source::start(w, &mtd, "g1", None);
    set_policy(&mtd, "g1", 6);
    for seed in 1..=3 {
        src.round(&mtd, "g1", seed);
    }
    check_rounds(&mtd, &src, "g1", w);
    // Collection against S3 keeps every point's chunks (nothing has expired).
    let gc = mtd.rewind_json(&["ltr", "gc", "--grace", "0s"]);
    assert_eq!(gc["manifests_deleted"], 0, "{gc}");
    let (seq, bytes, _, _) = &src.rounds[0];
    let r = nbd_read(&mtd, &format!("g1/d0@seq:{seq}"), &w.join("again.img"));
    assert!(r.status.success(), "{r:?}");
    assert!(fs::read(w.join("again.img")).unwrap() == *bytes);
}

/// One answer of moto's S3 API to a request signed like any S3 client's (curl's SigV4).
struct S3Answer {
    status: u16,
    /// Header names in lower case.
    headers: std::collections::BTreeMap<String, String>,
    body: Vec<u8>,
}

impl S3Answer {
    /// The object's lock: its mode and retain-until (ms since the epoch).
    fn lock(&self) -> Option<(String, u64)> {
        let mode = self.headers.get("x-amz-object-lock-mode")?.clone();
        let until = self.headers.get("x-amz-object-lock-retain-until-date")?;
        let t = humantime::parse_rfc3339(until).unwrap_or_else(|e| panic!("{until}: {e}"));
        let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        Some((mode, ms))
    }
}

/// `METHOD http://moto/BUCKET/PATH` with `headers` and `body`, signed with the test's keys.
fn s3_call(
    moto: &Moto,
    w: &Path,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&[u8]>,
) -> S3Answer {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-i",
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        "test:test",
    ]);
    if method == "HEAD" {
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let f = w.join(format!("s3-body-{n}"));
        fs::write(&f, b).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", f.display()));
    }
    let out = run_ok(cmd.arg(format!("http://127.0.0.1:{}/{path}", moto.port)));
    let mut rest: &[u8] = &out.stdout;
    // Skip interim answers (100 Continue), then split the head from the body.
    loop {
        let end = rest
            .windows(4)
            .position(|x| x == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{method} {path}: no HTTP head in {:?}", out));
        let head = String::from_utf8_lossy(&rest[..end]).to_string();
        rest = &rest[end + 4..];
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: {head}"));
        if status == 100 {
            continue;
        }
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return S3Answer {
            status,
            headers,
            body: rest.to_vec(),
        };
    }
}

/// The keys under `prefix` of the bucket (moto answers up to 1000 at once: enough here).
fn s3_keys(moto: &Moto, w: &Path, bucket: &str, prefix: &str) -> BTreeSet<String> {
    let a = s3_call(
        moto,
        w,
        "GET",
        &format!("{bucket}?list-type=2&prefix={prefix}"),
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let xml = String::from_utf8_lossy(&a.body).to_string();
    assert!(
        !xml.contains("<IsTruncated>true"),
        "more keys than one listing"
    );
    xml.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

/// A manifest's expiry and the chunk keys it names.
fn s3_manifest(moto: &Moto, w: &Path, bucket: &str, key: &str) -> (u64, BTreeSet<String>) {
    let a = s3_call(moto, w, "GET", &format!("{bucket}/{key}"), &[], None);
    assert_eq!(a.status, 200, "GET {key}");
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    let chunks = v["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str().filter(|c| !c.is_empty()))
        .map(|c| format!("chunks/{c}"))
        .collect();
    (v["keep_until_ms"].as_u64().unwrap(), chunks)
}

/// Every manifest in the bucket and every chunk it names are locked in governance mode until
/// at least the manifest's expiry. The chunks' retain-until, by key.
fn check_locks(moto: &Moto, w: &Path, bucket: &str) -> std::collections::BTreeMap<String, u64> {
    let mut until = std::collections::BTreeMap::new();
    let manifests = s3_keys(moto, w, bucket, "points/");
    assert!(!manifests.is_empty());
    for m in &manifests {
        let (keep, chunks) = s3_manifest(moto, w, bucket, m);
        let lock = s3_call(moto, w, "HEAD", &format!("{bucket}/{m}"), &[], None).lock();
        let (mode, t) = lock.unwrap_or_else(|| panic!("manifest {m} is not locked"));
        assert_eq!(mode, "GOVERNANCE", "{m}");
        assert!(
            t >= keep,
            "manifest {m} locked until {t}, kept until {keep}"
        );
        assert!(!chunks.is_empty(), "{m} names no chunk");
        for c in &chunks {
            let a = s3_call(moto, w, "HEAD", &format!("{bucket}/{c}"), &[], None);
            assert_eq!(a.status, 200, "{c} named by {m} is missing");
            let (mode, t) = a
                .lock()
                .unwrap_or_else(|| panic!("chunk {c} is not locked"));
            assert_eq!(mode, "GOVERNANCE", "{c}");
            assert!(
                t >= keep,
                "chunk {c} locked until {t}, but {m} needs it until {keep}"
            );
            until.insert(c.clone(), t);
        }
    }
    until
}

/// `rewind-mtd serve ... --ltr-object-lock governance` with `store` (None: the default
/// file:// store) must refuse to start: its stderr.
fn refused_start(w: &Path, name: &str, store: Option<&str>) -> String {
    let d = w.join(name);
    fs::create_dir_all(&d).unwrap();
    let mut cmd = Command::new(bin("rewind-mtd"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(d.join("data"))
        .arg("--unix")
        .arg(d.join("mtd.sock"))
        .arg("--nbd-unix")
        .arg(d.join("nbd.sock"))
        .arg("--control")
        .arg(d.join("control.sock"))
        .args(["--nbd-listen", "none", "--ltr-object-lock", "governance"]);
    if let Some(s) = store {
        cmd.args(["--ltr-store", s]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            kill_and_reap(&mut child);
            panic!("rewind-mtd {store:?} --ltr-object-lock did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{store:?}: {err}");
    err
}

#[test]
fn ltr_s3_object_lock() {
    if !can_run() || !have_tools("ltr_lock", &["nbdcopy", "mkfs.ext4", "moto_server", "curl"]) {
        return;
    }
    let work = tempdir();
    let w = work.path();
    let moto = Moto::start(w);
    let bucket = "rewind-lock";
    moto.create_bucket(bucket, true);

    // Refused at the edge, each with a message that says why.
    let err = refused_start(
        w,
        "file",
        Some(&format!("file://{}", w.join("st").display())),
    );
    assert!(
        err.contains("--ltr-object-lock") && err.contains("file://") && err.contains("S3"),
        "{err}"
    );
    let err = refused_start(w, "default", None);
    assert!(err.contains("file://DATA_DIR/ltr"), "{err}");
    let err = refused_start(w, "nolock", Some(&moto.url()));
    assert!(
        err.contains("bucket rewind-ltr") && err.contains("does not have Object Lock enabled"),
        "{err}"
    );

    // An "hour" of 500 ms: hourly points are kept 12 s; chunks are locked about 3 s longer.
    let views = w.join("views");
    let url = moto.url_of(bucket);
    let mtd = Mtd::start_with(
        w,
        &[
            "--views",
            views.to_str().unwrap(),
            "--seal-after",
            "1s",
            "--ltr-store",
            &url,
            "--ltr-interval",
            "1s",
            "--ltr-test-hour",
            "500ms",
            "--ltr-object-lock",
            "governance",
        ],
    );
    let mut src = Source::start(w, &mtd, "g1", None);
    set_policy(&mtd, "g1", 4);
    src.round(&mtd, "g1", 1);
    let first = src.rounds[0].0;
    wait_until("the first round's point to be kept", LONG, || {
        long_term_seqs(&mtd, "g1").contains(&first)
    });
    let manifest1 = format!("points/g1/d0/{first:020}.json");
    let locks1 = check_locks(&moto, w, bucket);

    // The data cannot be deleted: S3 refuses a delete of the manifest's version.
    let head = s3_call(
        &moto,
        w,
        "HEAD",
        &format!("{bucket}/{manifest1}"),
        &[],
        None,
    );
    let version = head.headers.get("x-amz-version-id").cloned().unwrap();
    let del = s3_call(
        &moto,
        w,
        "DELETE",
        &format!("{bucket}/{manifest1}?versionId={version}"),
        &[],
        None,
    );
    let why = String::from_utf8_lossy(&del.body);
    assert_eq!(del.status, 403, "a locked version was deleted: {why}");
    assert!(why.contains("AccessDenied"), "{why}");
    let again = s3_call(
        &moto,
        w,
        "HEAD",
        &format!("{bucket}/{manifest1}"),
        &[],
        None,
    );
    assert_eq!(again.status, 200);

    // A second round: its point reuses most chunks, kept later than their locks first ran;
    // the locks are extended (by that archive, or by the first point kept longer meanwhile).
    src.round(&mtd, "g1", 2);
    let second = src.rounds[1].0;
    wait_until("the second round's point to be kept", LONG, || {
        long_term_seqs(&mtd, "g1").contains(&second)
    });
    let extended = regex::Regex::new(r"the lock of [1-9][0-9]* (reused )?chunks extended").unwrap();
    wait_until("a job to extend chunk locks", LONG, || {
        extended.is_match(&mtd.control_get("/v1/jobs").1)
    });
    let locks2 = check_locks(&moto, w, bucket);
    let longer = locks2
        .iter()
        .filter(|(k, t)| locks1.get(*k).is_some_and(|t1| *t > t1))
        .count();
    assert!(longer > 0, "no reused chunk's lock was extended");

    // An unreferenced object still locked: collection counts it and goes on.
    let orphan = format!("chunks/{}", "ab".repeat(32));
    let until = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + LONG);
    let md5 = {
        use base64::Engine;
        use md5::Digest;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b"x"))
    };
    let put = s3_call(
        &moto,
        w,
        "PUT",
        &format!("{bucket}/{orphan}"),
        &[
            "x-amz-object-lock-mode: GOVERNANCE",
            &format!("x-amz-object-lock-retain-until-date: {until}"),
            &format!("content-md5: {md5}"),
        ],
        Some(b"x"),
    );
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let gc = mtd.rewind_json(&["ltr", "gc", "--grace", "0s"]);
    assert!(gc["chunks_locked"].as_u64().unwrap() >= 1, "{gc}");
    assert!(s3_keys(&moto, w, bucket, "chunks/").contains(&orphan));

    // Once the first point expires, collection deletes its manifest, every version of it
    // (a plain delete would leave them behind a delete marker), then, as their locks end,
    // the chunks no manifest names.
    wait_until("the first point's manifest to be collected", LONG, || {
        mtd.rewind_json(&["ltr", "gc", "--grace", "0s"]);
        s3_call(
            &moto,
            w,
            "HEAD",
            &format!("{bucket}/{manifest1}"),
            &[],
            None,
        )
        .status
            == 404
    });
    let versions = s3_call(
        &moto,
        w,
        "GET",
        &format!("{bucket}?versions&prefix={manifest1}"),
        &[],
        None,
    );
    let xml = String::from_utf8_lossy(&versions.body);
    assert!(
        !xml.contains("<Version>") && !xml.contains("<DeleteMarker>"),
        "versions of {manifest1} remain: {xml}"
    );
    wait_until("the garbage chunks to be collected", LONG, || {
        mtd.rewind_json(&["ltr", "gc", "--grace", "0s"]);
        let mut named = BTreeSet::new();
        for m in s3_keys(&moto, w, bucket, "points/") {
            named.extend(s3_manifest(&moto, w, bucket, &m).1);
        }
        named.insert(orphan.clone());
        s3_keys(&moto, w, bucket, "chunks/") == named
    });
    check_locks(&moto, w, bucket);

    // The kept point reads back exactly from locked objects.
    let (seq, bytes, _, _) = src.rounds.last().unwrap();
    let out = w.join("locked.img");
    let r = nbd_read(&mtd, &format!("g1/d0@seq:{seq}"), &out);
    assert!(r.status.success(), "{r:?}");
    assert!(fs::read(&out).unwrap() == *bytes);
}

/// s3s-fs (the s3s project's S3 server over a directory) with SigV4 checking on. moto does not
/// check signatures; s3s verifies every signed request's signature (and, as the body is read,
/// its payload hash) before it routes it, so Object Lock's own signed requests are proven here.
struct S3sFs {
    child: Child,
    port: u16,
    root: PathBuf,
}

const S3S_KEY: &str = "AKIDREWINDTEST";
const S3S_SECRET: &str = "rewind-test-secret/+key";

impl S3sFs {
    /// With the bucket `bucket` (a directory of its root).
    fn start(w: &Path, bucket: &str) -> S3sFs {
        let root = w.join("s3s");
        fs::create_dir_all(root.join(bucket)).unwrap();
        let port = free_port();
        let log = fs::File::create(w.join("s3s-fs.log")).unwrap();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3S_KEY, "--secret-key", S3S_SECRET])
            .arg(&root)
            .env("RUST_LOG", "s3s=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start s3s-fs");
        let s = S3sFs { child, port, root };
        wait_until("s3s-fs to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        s
    }

    /// Our Object Lock client for `bucket`, signing with `secret`.
    fn client(&self, bucket: &str, secret: &str) -> rewind_mtd::ltr::s3::SignedS3 {
        let b = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_allow_http(true)
            .with_region("eu-west-3")
            .with_access_key_id(S3S_KEY)
            .with_secret_access_key(secret);
        rewind_mtd::ltr::s3::SignedS3::from_builder(&b, bucket).unwrap()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Each of Object Lock's four signed requests (locked put, PutObjectRetention, version delete,
/// GetObjectLockConfiguration), sent by our client (`mtd/src/ltr/s3.rs`) to a server that checks
/// SigV4, is accepted: a wrong canonical request (an unsigned or mangled header, the `?retention`
/// query, the key's encoding, the payload hash) would be `SignatureDoesNotMatch` there, as on AWS.
/// The same requests with a wrong secret are refused, so that acceptance means something.
#[test]
fn ltr_s3_sigv4_verified() {
    use rewind_mtd::ltr::lock::{LockMode, Retain};
    use rewind_mtd::ltr::s3::S3Failure;

    if !have_tools("ltr_sigv4", &["s3s-fs"]) {
        return;
    }
    let tmp = tempdir();
    let w = tmp.path();
    let bucket = "rewind-lock";
    let server = S3sFs::start(w, bucket);
    let good = server.client(bucket, S3S_SECRET);
    let bad = server.client(bucket, "not-the-secret");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let retain = Retain {
        mode: LockMode::Compliance,
        until_ms: 4_102_444_800_123, // 2100-01-01, rounded up to the second when sent
    };
    // A key that needs percent-encoding in the path (the canonical URI must match the wire).
    let key = "points/g 1/d0/00000000000000000042.json";
    let stored = server.root.join(bucket).join(key);
    let log = || fs::read_to_string(w.join("s3s-fs.log")).unwrap_or_default();
    let signature_refused = |what: &str, r: Result<(), S3Failure>| match r {
        Err(S3Failure::Refused {
            status: 403, code, ..
        }) if code == "SignatureDoesNotMatch" => {}
        other => panic!("{what} with a wrong secret: {other:?}, want 403 SignatureDoesNotMatch"),
    };
    // s3s answers an operation s3s-fs does not implement with 501 NotImplemented "<Op> is not
    // implemented yet" from the operation itself, which s3s only calls after the signature was
    // verified (s3s ops/mod.rs `prepare`: the SigV4 check, then the route, the access check
    // and the full body, parsed as the operation's input, then the call). So that answer, and
    // only it, proves the signature of a request for that operation was accepted.
    let not_implemented = |what: &str, op: &str, r: Result<(), S3Failure>| match r {
        Err(S3Failure::Refused {
            status: 501,
            code,
            message,
        }) if code == "NotImplemented" && message == format!("{op} is not implemented yet") => {}
        other => panic!(
            "{what}: {other:?}, want 501 NotImplemented from {op} (its signature accepted)\n{}",
            log()
        ),
    };

    // Locked put: Content-MD5 and the two x-amz-object-lock-* headers signed, the body's hash.
    // s3s-fs implements PutObject: the object is stored, byte-exact.
    let bytes = b"{\"seq\":42,\"chunks\":[]}".to_vec();
    signature_refused(
        "locked put",
        rt.block_on(bad.put_locked(key, bytes.clone(), retain)),
    );
    assert!(
        !stored.exists(),
        "a refused put stored {}",
        stored.display()
    );
    rt.block_on(good.put_locked(key, bytes.clone(), retain))
        .unwrap_or_else(|e| panic!("locked put: {e}\n{}", log()));
    assert_eq!(fs::read(&stored).unwrap(), bytes);

    // PutObjectRetention: `PUT ?retention` (an empty query value) with an XML body.
    signature_refused(
        "PutObjectRetention",
        rt.block_on(bad.put_retention(key, retain)),
    );
    not_implemented(
        "PutObjectRetention",
        "PutObjectRetention",
        rt.block_on(good.put_retention(key, retain)),
    );

    // GetObjectLockConfiguration: `GET ?object-lock` on the bucket.
    signature_refused(
        "GetObjectLockConfiguration",
        rt.block_on(bad.lock_enabled()).map(|_| ()),
    );
    not_implemented(
        "GetObjectLockConfiguration",
        "GetObjectLockConfiguration",
        rt.block_on(good.lock_enabled()).map(|_| ()),
    );

    // Version delete: a real version id has `/`, `+` and `=`, all percent-encoded in the
    // canonical query. s3s-fs has no versions: it deletes the object, which shows the request
    // was carried out, not only let through.
    let version = "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQ==";
    signature_refused(
        "version delete",
        rt.block_on(bad.delete_version(key, version)),
    );
    assert!(
        stored.exists(),
        "a refused delete removed {}",
        stored.display()
    );
    rt.block_on(good.delete_version(key, version))
        .unwrap_or_else(|e| panic!("version delete: {e}\n{}", log()));
    assert!(!stored.exists(), "the delete left {}", stored.display());
}
