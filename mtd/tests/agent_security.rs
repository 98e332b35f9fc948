//! Attacks on the agent protocol, each performed against the real `rewind-mtd` and shown refused
//! with nothing changed: identity on the unix socket, group takeover, quotas, clock skew, pre-HELLO
//! memory, the HELLO deadline, the connection cap, fencing with a long reason, group deletion.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rewind_formats::frame::{FrameHeader, FrameKind};
use rewind_formats::message::*;
use rewind_formats::{RecordKind, RecordRef, Seq, MAX_FRAME_PAYLOAD};
use rewind_mtd::api::drain::{FenceReply, FenceRequest};
use rewind_mtd::api::overlays::{OverlayCreate, OverlayInfo};
use rewind_mtd::api::Deleted;

const DISK: u64 = 1 << 20;

struct Conn(UnixStream);

impl Conn {
    fn open(d: &Mtd) -> Conn {
        let s = UnixStream::connect(&d.sock).expect("connect to the agent socket");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn(s)
    }

    fn send(&mut self, m: &Message) {
        self.0.write_all(&m.to_frame()).expect("send");
    }

    /// The next message, or None once the daemon closed the connection.
    fn recv(&mut self) -> Option<Message> {
        recv_message(&mut self.0)
    }

    /// The WELCOME to `hello`.
    fn welcome(&mut self, hello: &Message) -> Welcome {
        self.send(hello);
        match self.recv() {
            Some(Message::Welcome(w)) => w,
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    /// An ERROR (ACKs before it skipped), then the connection closed; returns its message.
    fn error(&mut self) -> ErrorMsg {
        loop {
            match self.recv() {
                Some(Message::Ack(_)) => continue,
                Some(Message::Error(e)) => {
                    assert!(self.recv().is_none(), "connection closes after an ERROR");
                    return e;
                }
                other => panic!("expected ERROR, got {other:?}"),
            }
        }
    }

    fn wait_ack(&mut self, seq: u64) {
        loop {
            match self.recv() {
                Some(Message::Ack(a)) if a.durable.0 >= seq => return,
                Some(Message::Ack(_)) => continue,
                other => panic!("expected ACK {seq}, got {other:?}"),
            }
        }
    }
}

fn hello_many(agent: &str, groups: &[&str], disks: usize, size: u64) -> Message {
    Message::Hello(Hello {
        agent: agent.into(),
        software: None,
        dedup_window: 0,
        framed_records: false,
        groups: groups
            .iter()
            .map(|g| HelloGroup {
                group: g.to_string(),
                generation: 1,
                last_acked: Seq(0),
                epoch: 0,
                disks: (0..disks)
                    .map(|i| DiskInfo {
                        disk: format!("sd{}", (b'a' + i as u8) as char),
                        size_bytes: size,
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn hello(agent: &str, group: &str) -> Message {
    hello_many(agent, &[group], 1, DISK)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `n` records of `len` bytes from seq `first`, at consecutive offsets, stamped `ts`.
fn batch(group: &str, first: u64, n: usize, len: u32, kind: RecordKind, ts: u64) -> Message {
    let data = vec![0xabu8; len as usize];
    let recs: Vec<RecordRef<'_>> = (0..n)
        .map(|i| RecordRef {
            disk: 0,
            kind,
            offset: i as u64 * u64::from(len),
            len,
            data: if kind == RecordKind::Data { &data } else { &[] },
        })
        .collect();
    Message::Batch(Batch::build(group, 1, Seq(first), ts, &recs, 1))
}

fn groups_on_disk(d: &Mtd) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.data_dir.join("groups"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn durable(d: &Mtd, agent: &str, group: &str) -> u64 {
    Conn::open(d).welcome(&hello(agent, group)).groups[0]
        .durable
        .0
}

fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Run a tiny client as `nobody` (optionally with primary group `group`) that connects to
/// `sock`, sends `bytes` and prints everything it receives (hex) until the daemon closes.
fn as_nobody(sock: &Path, group: Option<&str>, bytes: &[u8]) -> (bool, Vec<u8>, String) {
    let script = r#"
import socket, sys, binascii
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-ERR", e.errno, e.strerror); sys.exit(3)
s.settimeout(20)
try:
    s.sendall(binascii.unhexlify(sys.argv[2]))
except OSError:
    pass  # refused before it read the HELLO: what it said is still to be read
out = b""
while True:
    try:
        b = s.recv(65536)
    except OSError:
        break
    if not b: break
    out += b
print("OK", binascii.hexlify(out).decode())
"#;
    let mut c = Command::new("runuser");
    c.args(["-u", "nobody"]);
    if let Some(g) = group {
        c.args(["-g", g]);
    }
    c.args(["--", "/usr/bin/python3", "-c", script])
        .arg(sock)
        .arg(hex(bytes));
    let out = run(&mut c);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    match text.strip_prefix("OK ") {
        Some(h) => (true, unhex(h), err),
        None if text == "OK" => (true, Vec::new(), err),
        None => (false, Vec::new(), format!("{text} {err}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn first_message(bytes: &[u8]) -> Message {
    let (head, payload, _) = rewind_formats::frame::decode_frame(bytes)
        .expect("valid frame")
        .expect("a whole frame");
    Message::decode_version(head.version, head.kind, payload).expect("valid message")
}

/// The test's directory must be reachable by `nobody`, so that what refuses it is the socket
/// (its mode and the daemon's peer check), not a parent directory.
fn traversable(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
}

#[test]
fn only_root_and_agent_uids_speak_for_agents_on_the_unix_socket() {
    let work = tempdir();
    traversable(work.path());
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let hello = hello("victim", "g").to_frame();

    // Not in the access group: the socket's mode refuses the connection itself.
    let (connected, _, why) = as_nobody(&d.sock, None, &hello);
    assert!(!connected, "nobody connected to a 0660 root:rewind socket");
    assert!(why.contains("CONNECT-ERR 13"), "{why}");

    // In the access group but not an agent uid: connected, then refused by the daemon.
    let (connected, got, why) = as_nobody(&d.sock, Some("rewind"), &hello);
    assert!(connected, "group member could not connect: {why}");
    match first_message(&got) {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden, "{}", e.message);
            assert!(e.message.contains("uid 65534"), "{}", e.message);
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(
        groups_on_disk(&d).is_empty(),
        "the refused HELLO made a group"
    );
    assert!(
        d.log_text().contains("may not speak for agents"),
        "the refusal is logged"
    );
    drop(d);

    // Allowed with --agent-uid: the same client is welcomed (the check is not a blanket refusal).
    let work2 = tempdir();
    traversable(work2.path());
    let d2 = Mtd::start_engine(work2.path(), "sync", &["--agent-uid", "65534"]);
    let (connected, got, why) = as_nobody(&d2.sock, Some("rewind"), &hello);
    assert!(connected, "{why}");
    assert!(
        matches!(first_message(&got), Message::Welcome(_)),
        "an --agent-uid was refused"
    );
}

#[test]
fn another_agent_can_neither_take_nor_write_a_group() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let mut a = Conn::open(&d);
    a.welcome(&hello("agent-a", "web"));
    a.send(&batch("web", 1, 1, 4096, RecordKind::Data, now_ms()));
    a.wait_ack(1);

    // While agent-a is connected, and after it left: refused, without naming agent-a.
    for round in 0..2 {
        let mut b = Conn::open(&d);
        b.send(&hello("agent-b", "web"));
        let e = b.error();
        assert_eq!(e.code, ErrorCode::Forbidden, "{}", e.message);
        assert!(
            e.message.contains("another agent") && !e.message.contains("agent-a"),
            "round {round}: {}",
            e.message
        );
        drop(a);
        a = Conn(UnixStream::pair().unwrap().0);
    }
    // A HELLO naming its own new group and the victim's: refused whole, its group not made.
    let mut b = Conn::open(&d);
    b.send(&hello_many("agent-b", &["mine", "web"], 1, DISK));
    assert_eq!(b.error().code, ErrorCode::Forbidden);
    assert_eq!(groups_on_disk(&d), vec!["web".to_string()]);
    // The victim's replica is as it left it, and it still feeds it.
    assert_eq!(durable(&d, "agent-a", "web"), 1);
}

#[test]
fn group_and_disk_quotas_refuse_a_hello_whole() {
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &["--max-groups-per-agent", "4", "--max-disks-per-group", "2"],
    );
    let five = ["g1", "g2", "g3", "g4", "g5"];
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &five, 1, DISK));
    let e = c.error();
    assert_eq!(e.code, ErrorCode::Forbidden, "{}", e.message);
    assert!(
        e.message.contains("--max-groups-per-agent"),
        "{}",
        e.message
    );
    assert!(groups_on_disk(&d).is_empty(), "a refused HELLO made groups");

    Conn::open(&d).welcome(&hello_many("a", &five[..4], 1, DISK));
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &["g1", "g5"], 1, DISK));
    assert_eq!(c.error().code, ErrorCode::Forbidden);
    assert_eq!(groups_on_disk(&d), vec!["g1", "g2", "g3", "g4"]);

    // Another agent has its own count.
    Conn::open(&d).welcome(&hello_many("b", &["h1"], 2, DISK));
    let mut c = Conn::open(&d);
    c.send(&hello_many("b", &["h2"], 3, DISK));
    let e = c.error();
    assert!(e.message.contains("--max-disks-per-group"), "{}", e.message);
    assert!(!groups_on_disk(&d).contains(&"h2".to_string()));
}

#[test]
fn a_huge_disk_size_is_refused_at_hello() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let rss0 = vm_rss_kib(d.pid());
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &["big"], 1, 1 << 60));
    let e = c.error();
    assert_eq!(e.code, ErrorCode::Protocol, "{}", e.message);
    assert!(e.message.contains("--max-disk-size"), "{}", e.message);
    assert!(groups_on_disk(&d).is_empty());
    assert!(vm_rss_kib(d.pid()) < rss0 + 32 * 1024);
    // The daemon is fine and takes a sane disk.
    Conn::open(&d).welcome(&hello("a", "small"));
}

#[test]
fn tiny_zero_records_past_the_index_quota_are_refused() {
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &["--max-index-bytes-per-group", "8MiB"],
    );
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &["z"], 1, 1 << 30));
    assert!(matches!(c.recv(), Some(Message::Welcome(_))));
    // 1Mi zero records of 512 bytes: a frame well under 1 MB.
    let m = batch("z", 1, 1 << 20, 512, RecordKind::Zero, now_ms());
    assert!(m.to_frame().len() < 1 << 20);
    c.send(&m);
    let e = c.error();
    assert_eq!(e.code, ErrorCode::NoSpace, "{}", e.message);
    assert!(
        e.message.contains("--max-index-bytes-per-group") && e.message.contains("nothing"),
        "{}",
        e.message
    );
    let report = inspect(&d.data_dir);
    let g = group_json(&report, "z");
    assert_eq!(g["durable_seq"], 0, "nothing of the batch was applied");
    assert_eq!(g["extents"], 0);
    // A batch within the quota still goes in.
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &["z"], 1, 1 << 30));
    assert!(matches!(c.recv(), Some(Message::Welcome(_))));
    c.send(&batch("z", 1, 1000, 512, RecordKind::Zero, now_ms()));
    c.wait_ack(1000);
}

#[test]
fn padding_of_sub_block_records_is_bounded() {
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &["--max-padding-bytes-per-group", "1MiB"],
    );
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &["p"], 1, 16 << 20));
    assert!(matches!(c.recv(), Some(Message::Welcome(_))));
    // 512-byte records are what the agent's sector-granular capture sends: accepted...
    c.send(&batch("p", 1, 100, 512, RecordKind::Data, now_ms()));
    c.wait_ack(100);
    let before = group_json(&inspect(&d.data_dir), "p")["journal_bytes"].clone();
    // ... until their padding (3.5 KiB each) would pass the group's quota.
    c.send(&batch("p", 101, 200, 512, RecordKind::Data, now_ms()));
    let e = c.error();
    assert_eq!(e.code, ErrorCode::NoSpace, "{}", e.message);
    assert!(
        e.message.contains("--max-padding-bytes-per-group"),
        "{}",
        e.message
    );
    let report = inspect(&d.data_dir);
    let g = group_json(&report, "p");
    assert_eq!(g["durable_seq"], 100);
    assert_eq!(
        g["journal_bytes"], before,
        "the refused batch wrote nothing"
    );
    // Whole-block records cost no padding and still go in.
    let mut c = Conn::open(&d);
    c.send(&hello_many("a", &["p"], 1, 16 << 20));
    assert!(matches!(c.recv(), Some(Message::Welcome(_))));
    c.send(&batch("p", 101, 200, 4096, RecordKind::Data, now_ms()));
    c.wait_ack(300);
}

#[test]
fn a_batch_stamped_2100_is_refused_and_merging_goes_on() {
    let work = tempdir();
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--retention",
            "1s",
            "--seal-after",
            "1s",
            "--merge-interval",
            "200ms",
        ],
    );
    let mut c = Conn::open(&d);
    c.welcome(&hello("a", "t"));
    c.send(&batch("t", 1, 1, 4096, RecordKind::Data, now_ms()));
    c.wait_ack(1);
    let y2100 = 4_102_444_800_000; // 2100-01-01T00:00:00Z
    c.send(&batch("t", 2, 1, 4096, RecordKind::Data, y2100));
    let e = c.error();
    assert_eq!(e.code, ErrorCode::OutOfRange, "{}", e.message);
    let this_year =
        humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..5].to_string();
    assert!(
        e.message.contains("2100-01-01") && e.message.contains(&this_year),
        "names both times: {}",
        e.message
    );
    let mut c = Conn::open(&d);
    assert_eq!(c.welcome(&hello("a", "t")).groups[0].durable.0, 1);
    c.send(&batch("t", 2, 1, 4096, RecordKind::Data, now_ms()));
    c.wait_ack(2);
    drop(c);
    let t0 = Instant::now();
    loop {
        let h = group_json(&inspect(&d.data_dir), "t")["horizon_seq"]
            .as_u64()
            .unwrap();
        if h >= 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "merging stopped at horizon {h}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bare_frame_headers_before_hello_allocate_nothing() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let rss0 = vm_rss_kib(d.pid());
    let header = |len: u32| {
        let mut h = FrameHeader::for_payload(FrameKind::Hello, b"").encode();
        h[8..12].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&h[..20]);
        h[20..24].copy_from_slice(&crc.to_le_bytes());
        h
    };
    // A header announcing a 64 MiB first frame is refused at once.
    let mut c = Conn::open(&d);
    c.0.write_all(&header(MAX_FRAME_PAYLOAD as u32)).unwrap();
    let e = c.error();
    assert_eq!(e.code, ErrorCode::Protocol, "{}", e.message);
    // 200 connections that announce the largest HELLO (2 MiB) and send nothing more.
    let conns: Vec<UnixStream> = (0..200)
        .map(|_| {
            let mut s = UnixStream::connect(&d.sock).unwrap();
            s.write_all(&header(2 << 20)).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let rss = vm_rss_kib(d.pid());
    assert!(
        rss < rss0 + 40 * 1024,
        "200 pending headers grew the daemon from {rss0} KiB to {rss} KiB"
    );
    drop(conns);
    Conn::open(&d).welcome(&hello("a", "after"));
}

#[test]
fn hello_deadline_and_connection_cap() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &["--max-agent-conns", "3"]);
    let t0 = Instant::now();
    let mut idle: Vec<Conn> = (0..3).map(|_| Conn::open(&d)).collect();
    // Past the cap: closed at once, without a word.
    let mut extra = Conn::open(&d);
    assert!(extra.recv().is_none(), "a 4th connection was served");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Silent connections are closed at the HELLO deadline (10 s), with an ERROR.
    for c in &mut idle {
        let e = c.error();
        assert_eq!(e.code, ErrorCode::Protocol, "{}", e.message);
        assert!(e.message.contains("no HELLO within 10 s"), "{}", e.message);
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    // Their slots are free again.
    std::thread::sleep(Duration::from_millis(200));
    Conn::open(&d).welcome(&hello("a", "g"));
}

#[test]
fn an_over_long_fence_reason_reaches_the_agent() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let mut c = Conn::open(&d);
    c.welcome(&hello("a", "f"));
    c.send(&batch("f", 1, 1, 4096, RecordKind::Data, now_ms()));
    c.wait_ack(1);
    let api = rewind_mtd::client::Client::new(&d.control).unwrap();
    // The API refuses a reason past its limit, and changes nothing...
    let e = api
        .post::<FenceReply>(
            "/v1/groups/f/fence",
            &FenceRequest {
                reason: "r".repeat(5000),
            },
        )
        .expect_err("a 5000-byte reason was accepted");
    assert!(e.to_string().contains("at most 4096"), "{e}");
    c.send(&batch("f", 2, 1, 4096, RecordKind::Data, now_ms()));
    c.wait_ack(2);
    // ...and the longest reason it takes is still longer than a fenced ERROR can carry whole:
    // the encoder cuts it, and the session still tells the agent.
    let reason = "r".repeat(4096);
    api.post::<FenceReply>("/v1/groups/f/fence", &FenceRequest { reason })
        .expect("fence");
    let e = c.error();
    assert_eq!(e.code, ErrorCode::Fenced, "{}", e.message);
    assert!(e.message.contains("fenced"), "{}", e.message);
    assert!(e.message.len() <= rewind_formats::MAX_MESSAGE_LEN);
    assert!(!d.log_text().contains("panicked"), "a task panicked");
    // And the next HELLO at the old generation is refused the same way.
    let mut c = Conn::open(&d);
    c.send(&hello("a", "f"));
    assert_eq!(c.error().code, ErrorCode::Fenced);
}

#[test]
fn group_delete_is_refused_while_in_use_and_works_when_idle() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let mut c = Conn::open(&d);
    c.welcome(&hello("a", "del"));
    c.send(&batch("del", 1, 4, 4096, RecordKind::Data, now_ms()));
    c.wait_ack(4);
    let delete = |g: &str| run(d.rewind_cmd().args(["group", "delete", g]));
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();

    let o = delete("del");
    assert!(
        !o.status.success() && err(&o).contains("agent a is connected"),
        "{}",
        err(&o)
    );
    drop(c);
    std::thread::sleep(Duration::from_millis(300));

    // An open NBD connection holds a view of the group.
    let connected = work.path().join("nbd-connected");
    {
        let mut nbd = Command::new("nbdsh");
        nbd.env(
            "PATH",
            format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
        )
        .args([
            "-u",
            &d.nbd_uri("del/sda"),
            "-c",
            &format!(
                "import time; open({:?}, 'w').write('x'); time.sleep(30)",
                connected.display().to_string()
            ),
        ]);
        let _nbd = Proc::spawn(&mut nbd);
        let t0 = Instant::now();
        while !connected.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "nbdsh did not connect"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = delete("del");
        assert!(
            !o.status.success() && err(&o).contains("view"),
            "not refused for the open NBD connection: {}",
            err(&o)
        );
        assert!(d.data_dir.join("groups/del").is_dir());
    }

    let api = rewind_mtd::client::Client::new(&d.control).unwrap();
    api.post::<OverlayInfo>(
        "/v1/overlays",
        &OverlayCreate {
            name: "o1".into(),
            export: "del/sda".into(),
        },
    )
    .expect("overlay");
    let o = delete("del");
    assert!(!o.status.success() && err(&o).contains("o1"), "{}", err(&o));
    assert!(
        d.data_dir.join("groups/del").is_dir(),
        "refused, yet changed"
    );
    api.delete::<Deleted>("/v1/overlays/o1")
        .expect("delete overlay");

    // Names are checked before they reach a path, by the CLI and by the route.
    let o = delete("..");
    assert!(!o.status.success());
    for bad in ["..", "..%2F..%2Fdata", "del%2F..%2F..", "%2E%2E"] {
        let r = api.delete::<Deleted>(&format!("/v1/groups/{bad}"));
        assert!(r.is_err(), "DELETE /v1/groups/{bad} was accepted: {r:?}");
    }
    assert!(d.data_dir.join("groups/del").is_dir());
    assert!(d.data_dir.join("LOCK").exists());

    run_ok(d.rewind_cmd().args(["group", "delete", "del"]));
    assert!(!d.data_dir.join("groups/del").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&d.data_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("deleted-"))
        .collect();
    assert!(leftovers.is_empty());
    let o = delete("del");
    assert!(
        !o.status.success() && err(&o).contains("unknown group"),
        "{}",
        err(&o)
    );
    // The name is free again: a new group starts empty.
    assert_eq!(durable(&d, "b", "del"), 0);
}

#[test]
fn insecure_says_for_tests_only_on_both_sides() {
    let mtd = run_ok(Command::new(bin("rewind-mtd")).args(["serve", "--help"]));
    let agent = run_ok(Command::new(bin("rewind-agent")).args(["run", "--help"]));
    for (who, out) in [("rewind-mtd serve", mtd), ("rewind-agent run", agent)] {
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let line = help
            .split("\n      --insecure\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{who} --help has no --insecure:\n{help}"));
        assert!(
            line[..line.len().min(200)].contains("FOR TESTS ONLY"),
            "{who} --help: {line}"
        );
    }
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .count();
    let limit = open_fds + 8;
    run_ok(Command::new("prlimit").args([
        "--pid",
        &d.pid().to_string(),
        &format!("--nofile={limit}:{limit}"),
    ]));
    let before = d.log_text().matches("accept failed").count();
    // More connections than descriptors: the rest wait in the backlog while accept fails.
    let conns: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(&d.sock).ok())
        .collect();
    assert!(conns.len() > 8, "could not queue connections");
    std::thread::sleep(Duration::from_secs(3));
    let lines = d.log_text().matches("accept failed").count() - before;
    assert!(
        (1..=3).contains(&lines),
        "{lines} 'accept failed' lines in 3 s (a busy loop logs thousands)"
    );
    drop(conns);
    // Once descriptors are free (the idle ones also meet the HELLO deadline) it serves again.
    let t0 = Instant::now();
    loop {
        let mut c = Conn::open(&d);
        c.0.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.send(&hello("a", "back"));
        match c.recv() {
            Some(Message::Welcome(_)) => break,
            other => assert!(
                t0.elapsed() < Duration::from_secs(40),
                "not serving again: {other:?}"
            ),
        }
    }
}
