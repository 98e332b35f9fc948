//! The NBD server against real clients (qemu-img, qemu-io, nbdinfo, nbdcopy, nbdsh, fio) and a
//! hand-written protocol client, while the load generator keeps streaming into the same group:
//! fixed points read back byte for byte, `latest` is frozen per connection, errors come back
//! with the right numbers, overlays take writes without changing the point under them.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const SDA: u64 = 16 << 20;
const SDB: u64 = 8 << 20;

fn workload() -> Workload {
    Workload {
        group: "g".into(),
        disks: vec!["sda:16MiB".into(), "sdb:8MiB".into()],
        seed: 11,
        // Random 4 KiB records over mostly unwritten disks: both data and holes to map.
        pattern: "random",
        record_size: "4KiB",
        payload: "random",
    }
}

/// A daemon with 2048 records (8 MiB) of the workload, tagged every 512 (t512 .. t2048).
fn setup(work: &Path, extra: &[&str]) -> (Mtd, Workload) {
    let d = Mtd::start_engine(work, "uring", extra);
    let wl = workload();
    run_ok(wl.run_cmd(&d.target(), "8MiB").args(["--tag-every", "512"]));
    assert_eq!(durable(&d), 2048);
    (d, wl)
}

fn durable(d: &Mtd) -> u64 {
    group_json(&inspect(&d.data_dir), "g")["durable_seq"]
        .as_u64()
        .unwrap()
}

/// Replication going on in the background: the same workload, 256 KiB more every 50 ms, each
/// run resuming at the target's durable seq.
struct Streamer {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Streamer {
    /// Start streaming; returns once the first run is in (so what follows overlaps replication).
    fn start(d: &Mtd, wl: &Workload) -> Streamer {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicU64::new(0));
        let connect = d.target();
        let wl = wl.clone();
        let (s, n) = (stop.clone(), runs.clone());
        let thread = std::thread::spawn(move || {
            let mut total: u64 = 8 << 20;
            while !s.load(Ordering::Relaxed) {
                total += 256 << 10;
                run_ok(&mut wl.run_cmd(&connect, &total.to_string()));
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let st = Streamer {
            stop,
            runs,
            thread: Some(thread),
        };
        st.wait_runs(1);
        st
    }

    fn wait_runs(&self, n: u64) {
        let t0 = Instant::now();
        while self.runs.load(Ordering::Relaxed) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the load generator made no progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop once at least one more run went in since the start, and check the target has it.
    fn finish(mut self, d: &Mtd) {
        self.wait_runs(2);
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("streamer");
        let seq = durable(d);
        assert!(
            seq >= 2048 + 128,
            "replication did not go on during the test (durable seq {seq})"
        );
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tcp_uri(d: &Mtd, export: &str) -> String {
    format!("nbd://{}/{export}", d.nbd_tcp())
}

/// Dump `disk` at `at` into the work dir.
fn dump_to(d: &Mtd, work: &Path, disk: &str, at: &str) -> PathBuf {
    let img = work.join(format!("{disk}-{}.img", at.replace(':', "-")));
    assert_ok(
        &dump(&d.data_dir, "g", disk, at, &img),
        &format!("dump {disk} at {at}"),
    );
    img
}

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    // nbdsh needs Debian's python (with the nbd module), not a pyenv one earlier on PATH.
    c.env(
        "PATH",
        format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
    );
    c
}

fn qemu_img_compare(uri: &str, img: &Path) {
    let out = run_ok(
        tool("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(img)
            .arg(uri),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("identical"),
        "qemu-img compare {uri}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn nbdcopy_to(uri: &str, out: &Path) {
    let _ = std::fs::remove_file(out);
    run_ok(tool("nbdcopy").arg(uri).arg(out));
}

fn same_file(a: &Path, b: &Path) {
    let x = std::fs::read(a).unwrap();
    let y = std::fs::read(b).unwrap();
    assert_eq!(
        x.len(),
        y.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    if let Some(i) = x.iter().zip(&y).position(|(p, q)| p != q) {
        panic!("{} and {} differ at byte {i}", a.display(), b.display());
    }
}

fn nbdinfo_json(uri: &str) -> serde_json::Value {
    let out = run_ok(tool("nbdinfo").arg("--json").arg(uri));
    serde_json::from_slice(&out.stdout).expect("nbdinfo json")
}

/// `nbdinfo --map` as (offset, length, type): covers the disk, and every "zero" run reads as
/// zeroes in the image.
fn check_map(uri: &str, img: &Path) {
    let out = run_ok(tool("nbdinfo").arg("--map").arg(uri));
    let bytes = std::fs::read(img).unwrap();
    let mut pos = 0u64;
    let (mut data, mut zero) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (off, len, ty): (u64, u64, u32) = (
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        );
        assert_eq!(off, pos, "map is contiguous: {line}");
        match ty {
            0 => data += 1,
            3 => {
                zero += 1;
                let run = &bytes[off as usize..(off + len) as usize];
                assert!(run.iter().all(|&b| b == 0), "{uri}: {line} is not zeroes");
            }
            other => panic!("unexpected map type {other}: {line}"),
        }
        pos += len;
    }
    assert_eq!(pos, bytes.len() as u64, "map covers the disk");
    assert!(data > 0 && zero > 0, "a random workload has data and holes");
}

/// Run scripts/nbdsh_cases.py with these inputs; returns its stdout.
fn nbdsh_cases(env: &[(&str, String)]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/nbdsh_cases.py");
    let mut c = tool("nbdsh");
    c.args(["-n", "-c", &format!("exec(open({script:?}).read())")]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = run_ok(&mut c);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn read_only_exports_with_real_clients() {
    let work = tempdir();
    let w = work.path();
    let (d, wl) = setup(w, &[]);

    // Quiet first: latest is seq 2048 for everyone.
    let latest = dump_to(&d, w, "sda", "latest");
    assert_ok(&wl.verify(&latest, 0, 2048), "verify the latest dump");
    qemu_img_compare(&d.nbd_uri("g/sda"), &latest);
    let copy = w.join("copy.img");
    nbdcopy_to(&d.nbd_uri("g/sda"), &copy);
    same_file(&copy, &latest);

    let info = nbdinfo_json(&d.nbd_uri("g/sda"));
    let e = &info["exports"][0];
    assert_eq!(e["export-size"].as_u64(), Some(SDA), "{info}");
    assert_eq!(e["is_read_only"], true, "{info}");
    assert_eq!(e["can_multi_conn"], true, "{info}");
    assert_eq!(e["block_size_maximum"].as_u64(), Some(32 << 20), "{info}");
    assert!(
        e["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "base:allocation"),
        "{info}"
    );
    assert_eq!(info["structured"], true, "{info}");
    let out = run_ok(
        tool("nbdinfo")
            .args(["--list", "--json"])
            .arg(format!("nbd+unix:///?socket={}", d.nbd_sock.display())),
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["export-name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"g/sda") && names.contains(&"g/sdb"),
        "{list}"
    );

    // Now with replication going on: fixed points stay exact, over unix and TCP.
    let streamer = Streamer::start(&d, &wl);
    for (disk, index, at, seq, size) in [
        ("sda", 0, "seq:1000", 1000, SDA),
        ("sdb", 1, "tag:t1536", 1536, SDB),
        ("sda", 0, "tag:t2048", 2048, SDA),
    ] {
        let export = format!("g/{disk}@{at}");
        let img = dump_to(&d, w, disk, at);
        assert_ok(&wl.verify(&img, index, seq), &format!("verify {export}"));
        qemu_img_compare(&d.nbd_uri(&export), &img);
        qemu_img_compare(&tcp_uri(&d, &export), &img);
        nbdcopy_to(&tcp_uri(&d, &export), &copy);
        same_file(&copy, &img);
        check_map(&d.nbd_uri(&export), &img);
        let info = nbdinfo_json(&tcp_uri(&d, &export));
        assert_eq!(info["exports"][0]["export-size"].as_u64(), Some(size));
        assert!(info["exports"][0]["description"]
            .as_str()
            .unwrap()
            .contains(&format!("frozen at seq {seq}")));
        std::fs::remove_file(&img).unwrap();
    }
    streamer.finish(&d);
    let log = d.log_text();
    assert!(
        log.contains("nbd client connected"),
        "connections are logged"
    );
    assert!(
        log.contains("nbd client disconnected"),
        "disconnections are logged"
    );
}

#[test]
fn nbdsh_protocol_cases_while_streaming() {
    let work = tempdir();
    let w = work.path();
    let (d, wl) = setup(w, &[]);
    let streamer = Streamer::start(&d, &wl);
    let ro = dump_to(&d, w, "sda", "seq:1500");
    let latest_out = w.join("latest.out");
    let out = nbdsh_cases(&[
        ("NBD_SOCK", d.nbd_sock.display().to_string()),
        ("NBD_MODE", "readonly".into()),
        ("RO_EXPORT", "g/sda@seq:1500".into()),
        ("RO_IMAGE", ro.display().to_string()),
        ("LATEST_EXPORT", "g/sda".into()),
        ("LATEST_OUT", latest_out.display().to_string()),
    ]);
    for case in ["options", "errors", "block_status", "aio", "latest"] {
        assert!(out.contains(&format!("ok {case}")), "case {case}:\n{out}");
    }
    // What latest read as is the model at the seq that connection was frozen at.
    let seq: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("latest_seq "))
        .expect("latest_seq line")
        .parse()
        .unwrap();
    assert!(seq >= 2048);
    assert_ok(&wl.verify(&latest_out, 0, seq), "verify latest as read");
    streamer.finish(&d);
}

#[test]
fn overlays_read_write_with_real_clients() {
    let work = tempdir();
    let w = work.path();
    let (mut d, wl) = setup(w, &[]);
    let streamer = Streamer::start(&d, &wl);
    let base = dump_to(&d, w, "sda", "seq:2000");
    let rewind = |args: &[&str]| {
        run_ok(
            Command::new(bin("rewind"))
                .arg("--control")
                .arg(&d.control)
                .args(args),
        )
    };
    for name in ["o1", "o2", "o3"] {
        rewind(&["overlay", "create", name, "g/sda@seq:2000"]);
    }

    // libnbd: unaligned and FUA writes, zeroes (fast, no-hole), trim, block status, ENOSPC,
    // many writes in flight, a second connection seeing them.
    let out = nbdsh_cases(&[
        ("NBD_SOCK", d.nbd_sock.display().to_string()),
        ("NBD_MODE", "overlay".into()),
        ("OV_EXPORT", "g/sda@overlay:o1".into()),
        ("OV_IMAGE", base.display().to_string()),
    ]);
    assert!(out.contains("ok overlay"), "{out}");

    // qemu-io: patterns, zeroes, discard.
    let o2 = d.nbd_uri("g/sda@overlay:o2");
    let out = run_ok(
        tool("qemu-io")
            .args(["-f", "raw"])
            .args([
                "-c",
                "write -P 0xab 0 1M",
                "-c",
                "read -P 0xab 0 1M",
                "-c",
                "write -P 0xcd 2M 1M",
                "-c",
                "discard 2M 512k",
                "-c",
                "write -z 2560k 256k",
                "-c",
                "write -z 100 5000",
                "-c",
                "read -P 0 2M 768k",
                "-c",
                "read -P 0xcd 2816k 256k",
                "-c",
                "read -P 0 100 5000",
                "-c",
                "read -P 0xab 5100 4096",
                "-c",
                "flush",
            ])
            .arg(&o2),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Pattern verification failed"), "{text}");

    // fio over libnbd: random 4 KiB writes at depth, verified by reading back.
    run_ok(tool("fio").args([
        "--name=overlay",
        "--ioengine=nbd",
        &format!("--uri={}", tcp_uri(&d, "g/sda@overlay:o2")),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=16",
        "--size=8M",
        "--verify=crc32c",
        "--verify_state_save=0",
        "--do_verify=1",
    ]));

    // nbdcopy into an overlay (several connections, CAN_MULTI_CONN) and back out.
    let src = w.join("src.img");
    let pattern: Vec<u8> = (0..SDA)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &pattern).unwrap();
    let o3 = d.nbd_uri("g/sda@overlay:o3");
    run_ok(tool("nbdcopy").args(["--connections=4"]).arg(&src).arg(&o3));
    let back = w.join("back.img");
    nbdcopy_to(&o3, &back);
    same_file(&back, &src);

    // The point under the overlays never changed.
    qemu_img_compare(&d.nbd_uri("g/sda@seq:2000"), &base);
    let again = w.join("again.img");
    assert_ok(
        &dump(&d.data_dir, "g", "sda", "seq:2000", &again),
        "dump again",
    );
    same_file(&again, &base);
    assert_ok(
        &wl.verify(&base, 0, 2000),
        "the point is still the model at 2000",
    );
    streamer.finish(&d);

    // Flushed overlay writes survive a restart.
    d.terminate();
    d.restart();
    nbdcopy_to(&o3, &back);
    same_file(&back, &src);
    for f in [&src, &back, &base, &again] {
        std::fs::remove_file(f).unwrap();
    }
}

#[test]
fn old_and_bad_points_are_refused_with_the_store_message() {
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "uring",
        &[
            "--retention",
            "2s",
            "--seal-after",
            "500ms",
            "--merge-interval",
            "200ms",
            "--segment-size",
            "1MiB",
        ],
    );
    let wl = workload();
    run_ok(&mut wl.run_cmd(&d.target(), "4MiB"));
    let t0 = Instant::now();
    while group_json(&inspect(&d.data_dir), "g")["horizon_seq"]
        .as_u64()
        .unwrap()
        < 100
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the horizon never moved"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (export, want) in [
        ("g/sda@seq:1", "older than the retention horizon"),
        ("g/sda@seq:99999999", "no point seq:99999999"),
        ("g/sda@yesterday", "bad point"),
        ("nope/sda", "unknown group nope"),
        ("g/sdz", "unknown disk sdz"),
        ("g/sda@overlay:none", "no overlay named none"),
    ] {
        let out = run(tool("nbdinfo")
            .env("LIBNBD_DEBUG", "1")
            .arg(d.nbd_uri(export)));
        assert!(!out.status.success(), "{export} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("server error message") && err.contains(want),
            "{export}: want the server's message {want:?} in:\n{}",
            err.lines()
                .filter(|l| l.contains("error"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let info = nbdinfo_json(&d.nbd_uri("g/sda"));
    assert_eq!(info["exports"][0]["export-size"].as_u64(), Some(SDA));
}

// ---------------------------------------------------------------------------------------------
// A hand-written client, for what libnbd will not send: NBD_OPT_EXPORT_NAME with and without
// NO_ZEROES, unknown options, pipelined requests read back out of order, bad flags and lengths,
// a bad magic.

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_BLOCK_STATUS: u16 = 7;
const FLAG_REQ_ONE: u16 = 1 << 3;
const EPERM: u32 = 1;
const EINVAL: u32 = 22;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Raw(Box<dyn Stream>);

#[derive(Debug)]
enum Reply {
    Simple {
        handle: u64,
        error: u32,
    },
    Chunk {
        flags: u16,
        kind: u16,
        handle: u64,
        payload: Vec<u8>,
    },
}

impl Raw {
    fn unix(sock: &Path) -> UnixStream {
        let s = UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Connect and answer the greeting with `client_flags`; returns the handshake flags.
    fn connect(s: impl Stream + 'static, client_flags: u32) -> (Raw, u16) {
        let mut r = Raw(Box::new(s));
        assert_eq!(r.u64(), NBDMAGIC);
        assert_eq!(r.u64(), IHAVEOPT);
        let flags = u16::from_be_bytes(r.bytes(2).try_into().unwrap());
        r.0.write_all(&client_flags.to_be_bytes()).unwrap();
        (r, flags)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.0.read_exact(&mut b).unwrap();
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.bytes(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.bytes(8).try_into().unwrap())
    }

    /// The server closed the connection (EOF, or a reset).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read(&mut b), Ok(0) | Err(_))
    }

    fn opt(&mut self, opt: u32, data: &[u8]) {
        let mut m = Vec::new();
        m.extend_from_slice(&IHAVEOPT.to_be_bytes());
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.0.write_all(&m).unwrap();
    }

    fn opt_reply(&mut self, opt: u32) -> (u32, Vec<u8>) {
        assert_eq!(self.u64(), REPLY_MAGIC);
        assert_eq!(self.u32(), opt);
        let kind = self.u32();
        let len = self.u32() as usize;
        (kind, self.bytes(len))
    }

    fn request(&mut self, flags: u16, cmd: u16, handle: u64, offset: u64, len: u32, data: &[u8]) {
        let mut m = Vec::with_capacity(28 + data.len());
        m.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&cmd.to_be_bytes());
        m.extend_from_slice(&handle.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(data);
        self.0.write_all(&m).unwrap();
    }

    /// One reply; a simple reply's READ payload is left for the caller to read.
    fn reply(&mut self) -> Reply {
        match self.u32() {
            0x6744_6698 => {
                let error = self.u32();
                Reply::Simple {
                    handle: self.u64(),
                    error,
                }
            }
            0x668e_33ef => {
                let b = self.bytes(16);
                let flags = u16::from_be_bytes([b[0], b[1]]);
                let kind = u16::from_be_bytes([b[2], b[3]]);
                let handle = u64::from_be_bytes(b[4..12].try_into().unwrap());
                let len = u32::from_be_bytes(b[12..16].try_into().unwrap()) as usize;
                Reply::Chunk {
                    flags,
                    kind,
                    handle,
                    payload: self.bytes(len),
                }
            }
            m => panic!("bad reply magic {m:#x}"),
        }
    }

    /// A structured error chunk: (errno, message).
    fn error_chunk(&mut self, handle: u64) -> (u32, String) {
        match self.reply() {
            Reply::Chunk {
                flags: 1,
                kind: 0x8001,
                handle: h,
                payload,
            } if h == handle => (
                u32::from_be_bytes(payload[0..4].try_into().unwrap()),
                String::from_utf8(payload[6..].to_vec()).unwrap(),
            ),
            r => panic!("want an error chunk for {handle}, got {r:?}"),
        }
    }
}

fn string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut v = string(name);
    v.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        v.extend_from_slice(&i.to_be_bytes());
    }
    v
}

#[test]
fn raw_protocol_handshake_and_errors() {
    let work = tempdir();
    let w = work.path();
    let (d, wl) = setup(w, &[]);
    let streamer = Streamer::start(&d, &wl);
    let img = std::fs::read(dump_to(&d, w, "sda", "seq:1000")).unwrap();
    let export = "g/sda@seq:1000";

    // Unknown client flags: hung up on.
    let (mut r, flags) = Raw::connect(Raw::unix(&d.nbd_sock), 1 << 5);
    assert_eq!(flags, 0b11, "FIXED_NEWSTYLE | NO_ZEROES");
    assert!(r.closed());

    // Fixed newstyle with NO_ZEROES: option errors leave the connection usable.
    let (mut r, _) = Raw::connect(Raw::unix(&d.nbd_sock), 0b11);
    r.opt(99, b"xyz");
    assert_eq!(r.opt_reply(99).0, REP_ERR_UNSUP);
    r.opt(OPT_LIST, b"junk");
    assert_eq!(r.opt_reply(OPT_LIST).0, REP_ERR_INVALID);
    r.opt(OPT_LIST, b"");
    let mut names = Vec::new();
    loop {
        let (kind, p) = r.opt_reply(OPT_LIST);
        if kind == REP_ACK {
            break;
        }
        assert_eq!(kind, REP_SERVER);
        let n = u32::from_be_bytes(p[0..4].try_into().unwrap()) as usize;
        names.push(String::from_utf8(p[4..4 + n].to_vec()).unwrap());
    }
    assert!(names.contains(&"g/sda".to_string()), "{names:?}");
    r.opt(OPT_GO, &go_data("nope/sda", &[]));
    let (kind, msg) = r.opt_reply(OPT_GO);
    assert_eq!(kind, REP_ERR_UNKNOWN);
    assert!(String::from_utf8_lossy(&msg).contains("unknown group nope"));
    r.opt(OPT_GO, &go_data("g", &[]));
    assert_eq!(r.opt_reply(OPT_GO).0, REP_ERR_UNKNOWN);
    r.opt(OPT_GO, b"\0\0\0\x09short");
    assert_eq!(r.opt_reply(OPT_GO).0, REP_ERR_INVALID);
    let mut meta = string(export);
    meta.extend_from_slice(&2u32.to_be_bytes());
    meta.extend_from_slice(&string("base:allocation"));
    meta.extend_from_slice(&string("x-other:thing"));
    r.opt(OPT_SET_META_CONTEXT, &meta);
    assert_eq!(
        r.opt_reply(OPT_SET_META_CONTEXT).0,
        REP_ERR_INVALID,
        "meta contexts need structured replies first"
    );
    r.opt(OPT_STRUCTURED_REPLY, b"");
    assert_eq!(r.opt_reply(OPT_STRUCTURED_REPLY).0, REP_ACK);
    r.opt(OPT_SET_META_CONTEXT, &meta);
    let (kind, p) = r.opt_reply(OPT_SET_META_CONTEXT);
    assert_eq!(kind, REP_META_CONTEXT);
    assert_eq!(&p[4..], b"base:allocation");
    let ctx = u32::from_be_bytes(p[0..4].try_into().unwrap());
    assert_eq!(r.opt_reply(OPT_SET_META_CONTEXT).0, REP_ACK);
    // Old-style entry: size and flags, and no 124 zeroes (NO_ZEROES).
    r.opt(OPT_EXPORT_NAME, export.as_bytes());
    assert_eq!(r.u64(), SDA);
    let tflags = u16::from_be_bytes(r.bytes(2).try_into().unwrap());
    assert_eq!(tflags & 0b11, 0b11, "HAS_FLAGS | READ_ONLY: {tflags:#x}");
    assert_ne!(tflags & (1 << 8), 0, "CAN_MULTI_CONN");

    // Pipelined reads: all sent before any reply is read; each reply matches its handle.
    let reads = [
        (1u64, 0u64, 1u32 << 20),
        (2, 4096, 4096),
        (3, 5 << 20, 65536),
        (4, 777, 3333),
    ];
    for (h, off, len) in reads {
        r.request(0, CMD_READ, h, off, len, &[]);
    }
    for _ in reads {
        match r.reply() {
            Reply::Chunk {
                flags: 1,
                kind: 1,
                handle,
                payload,
            } => {
                let (_, off, len) = reads.iter().find(|x| x.0 == handle).copied().unwrap();
                assert_eq!(u64::from_be_bytes(payload[0..8].try_into().unwrap()), off);
                assert_eq!(
                    &payload[8..],
                    &img[off as usize..(off + len as u64) as usize],
                    "read {handle}"
                );
            }
            other => panic!("want an OFFSET_DATA chunk, got {other:?}"),
        }
    }
    // Errors, each followed by a good read to show the stream stayed in sync.
    r.request(1 << 14, CMD_READ, 10, 0, 4096, &[]);
    let (e, msg) = r.error_chunk(10);
    assert_eq!(e, EINVAL);
    assert!(msg.contains("flags"), "{msg}");
    r.request(0, CMD_WRITE, 11, 0, 4096, &[0x55; 4096]);
    let (e, msg) = r.error_chunk(11);
    assert_eq!(e, EPERM);
    assert!(msg.contains("read-only"), "{msg}");
    // Too large and read-only: refused (read-only is checked first), and the 32 MiB payload
    // skipped so the next request is read from the right place.
    r.request(
        0,
        CMD_WRITE,
        12,
        0,
        (32 << 20) + 4096,
        &vec![1; (32 << 20) + 4096],
    );
    assert_eq!(r.error_chunk(12).0, EPERM);
    r.request(0, CMD_READ, 13, SDA - 4096, 8192, &[]);
    assert_eq!(r.error_chunk(13).0, EINVAL);
    r.request(0, 99, 14, 0, 0, &[]);
    assert_eq!(r.error_chunk(14).0, EINVAL);
    r.request(FLAG_REQ_ONE, CMD_BLOCK_STATUS, 15, 0, 1 << 20, &[]);
    match r.reply() {
        Reply::Chunk {
            flags: 1,
            kind: 5,
            handle: 15,
            payload,
        } => {
            assert_eq!(payload.len(), 4 + 8, "REQ_ONE: one descriptor");
            assert_eq!(u32::from_be_bytes(payload[0..4].try_into().unwrap()), ctx);
            let len = u32::from_be_bytes(payload[4..8].try_into().unwrap());
            assert!(len > 0 && len <= 1 << 20);
        }
        other => panic!("want a block status chunk, got {other:?}"),
    }
    r.request(0, CMD_READ, 16, 8192, 4096, &[]);
    match r.reply() {
        Reply::Chunk {
            kind: 1,
            handle: 16,
            payload,
            ..
        } => assert_eq!(&payload[8..], &img[8192..12288]),
        other => panic!("{other:?}"),
    }
    r.request(0, CMD_DISC, 17, 0, 0, &[]);
    assert!(r.closed(), "NBD_CMD_DISC closes the connection");

    // Over TCP, no NO_ZEROES, simple replies: 124 zeroes after the export info; a failed read
    // has no payload; block status without a context is EINVAL; a bad magic hangs up.
    let tcp = std::net::TcpStream::connect(d.nbd_tcp()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut r, _) = Raw::connect(tcp, 1);
    r.opt(OPT_EXPORT_NAME, export.as_bytes());
    assert_eq!(r.u64(), SDA);
    r.bytes(2);
    assert_eq!(r.bytes(124), vec![0u8; 124]);
    r.request(0, CMD_READ, 20, SDA, 4096, &[]);
    match r.reply() {
        Reply::Simple { handle: 20, error } => assert_eq!(error, EINVAL),
        other => panic!("{other:?}"),
    }
    r.request(0, CMD_BLOCK_STATUS, 21, 0, 4096, &[]);
    match r.reply() {
        Reply::Simple { handle: 21, error } => assert_eq!(error, EINVAL),
        other => panic!("{other:?}"),
    }
    r.request(0, CMD_READ, 22, 12288, 4096, &[]);
    match r.reply() {
        Reply::Simple {
            handle: 22,
            error: 0,
        } => assert_eq!(r.bytes(4096), &img[12288..16384]),
        other => panic!("{other:?}"),
    }
    r.0.write_all(&[0xee; 28]).unwrap();
    assert!(r.closed(), "a bad magic ends the connection");

    // NBD_OPT_GO with info requests; contexts set for another export do not carry over.
    let (mut r, _) = Raw::connect(Raw::unix(&d.nbd_sock), 0b11);
    r.opt(OPT_STRUCTURED_REPLY, b"");
    assert_eq!(r.opt_reply(OPT_STRUCTURED_REPLY).0, REP_ACK);
    let mut meta = string("g/sdb");
    meta.extend_from_slice(&1u32.to_be_bytes());
    meta.extend_from_slice(&string("base:allocation"));
    r.opt(OPT_SET_META_CONTEXT, &meta);
    assert_eq!(r.opt_reply(OPT_SET_META_CONTEXT).0, REP_META_CONTEXT);
    assert_eq!(r.opt_reply(OPT_SET_META_CONTEXT).0, REP_ACK);
    r.opt(OPT_GO, &go_data(export, &[1, 2, 3]));
    let mut infos = std::collections::BTreeMap::new();
    loop {
        let (kind, p) = r.opt_reply(OPT_GO);
        if kind == REP_ACK {
            break;
        }
        assert_eq!(kind, REP_INFO);
        infos.insert(u16::from_be_bytes([p[0], p[1]]), p[2..].to_vec());
    }
    assert_eq!(infos[&0][0..8], SDA.to_be_bytes());
    assert_eq!(infos[&1], export.as_bytes());
    assert!(String::from_utf8_lossy(&infos[&2]).contains("frozen at seq 1000"));
    assert_eq!(infos[&3][0..4], 1u32.to_be_bytes());
    assert_eq!(infos[&3][4..8], 4096u32.to_be_bytes());
    assert_eq!(infos[&3][8..12], (32u32 << 20).to_be_bytes());
    r.request(0, CMD_BLOCK_STATUS, 30, 0, 4096, &[]);
    assert_eq!(r.error_chunk(30).0, EINVAL);
    r.request(0, CMD_DISC, 31, 0, 0, &[]);
    assert!(r.closed());

    // A failed NBD_OPT_EXPORT_NAME can only hang up; NBD_OPT_ABORT is acknowledged.
    let (mut r, _) = Raw::connect(Raw::unix(&d.nbd_sock), 0b11);
    r.opt(OPT_EXPORT_NAME, b"g/nope");
    assert!(r.closed());
    let (mut r, _) = Raw::connect(Raw::unix(&d.nbd_sock), 0b11);
    r.opt(OPT_ABORT, b"");
    assert_eq!(r.opt_reply(OPT_ABORT).0, REP_ACK);
    assert!(r.closed());

    streamer.finish(&d);
    let log = d.log_text();
    assert!(log.contains("bad magic"), "a bad magic is logged");
    assert!(log.contains("g/nope"), "a failed export name is logged");
}
