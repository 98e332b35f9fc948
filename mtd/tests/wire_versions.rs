//! Frame versions on the wire: an agent of the previous build (frame version 1, no software
//! version in its HELLO) is still served, in its own version; an agent of this build reports its
//! software version and its view of the group (CONTROL op report), which the target shows in
//! `GET /v1/groups`; a session that changes version mid-way, or a version this build does not
//! know, is refused and applies nothing. And tag now (CONTROL tag request): the agent's tag
//! answers it, and its refusal (which keeps the session) is passed on with why.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use rewind_formats::frame::blocking::read_frame;
use rewind_formats::frame::{encode_frame_version, FrameHeader, FrameKind};
use rewind_formats::message::*;
use rewind_formats::{RecordKind, RecordRef, Seq, FRAME_VERSION};

const DISK: u64 = 1 << 20;

struct Conn(UnixStream);

impl Conn {
    fn open(d: &Mtd) -> Conn {
        let s = UnixStream::connect(&d.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn(s)
    }

    fn send(&mut self, m: &Message, version: u16) {
        self.0
            .write_all(&m.to_frame_version(version))
            .expect("send");
    }

    /// The next frame's header and message, or None once the daemon closed the connection.
    fn recv(&mut self) -> Option<(FrameHeader, Message)> {
        let (head, payload) = read_frame(&mut self.0).ok()??;
        let m = Message::decode_version(head.version, head.kind, &payload).expect("a message");
        Some((head, m))
    }
}

fn hello(agent: &str, group: &str, software: Option<&str>) -> Message {
    Message::Hello(Hello {
        agent: agent.into(),
        software: software.map(str::to_string),
        dedup_window: 0,
        framed_records: false,
        groups: vec![HelloGroup {
            group: group.into(),
            generation: 1,
            last_acked: Seq(0),
            epoch: 0,
            disks: vec![DiskInfo {
                disk: "sda".into(),
                size_bytes: DISK,
            }],
        }],
    })
}

fn batch(group: &str, first: u64, fill: u8) -> Message {
    let data = vec![fill; 4096];
    let recs = [RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: 0,
        len: 4096,
        data: &data,
    }];
    Message::Batch(Batch::build(group, 1, Seq(first), 1_000, &recs, 1))
}

/// The group's `agent` entry in `GET /v1/groups`.
fn agent_seen(d: &Mtd, group: &str) -> serde_json::Value {
    let (code, body) = d.control_get("/v1/groups");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("groups JSON");
    let g = v["groups"]
        .as_array()
        .expect("groups list")
        .iter()
        .find(|g| g["name"] == group)
        .unwrap_or_else(|| panic!("group {group} missing from {body}"))
        .clone();
    g["agent"].clone()
}

/// Polls `f` until it returns something (10 s at most).
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < until, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn older_agents_are_served_in_their_version_and_newer_ones_say_theirs() {
    let work = tempdir();
    let d = Mtd::start(work.path());

    // An agent of the previous build: every frame it gets back is version 1.
    let mut old = Conn::open(&d);
    old.send(&hello("old-agent", "g1", None), 1);
    let (head, m) = old.recv().expect("an answer to the HELLO");
    assert!(matches!(m, Message::Welcome(_)), "{m:?}");
    assert_eq!(head.version, 1, "WELCOME to a version 1 agent");
    old.send(&batch("g1", 1, 0x11), 1);
    loop {
        let (head, m) = old.recv().expect("an ACK");
        assert_eq!(head.version, 1, "{} to a version 1 agent", head.kind.name());
        if let Message::Ack(a) = m {
            assert_eq!(a.durable, Seq(1));
            break;
        }
    }
    let seen = agent_seen(&d, "g1");
    assert_eq!(seen["agent"], "old-agent");
    assert!(
        seen["version"].is_null(),
        "a version 1 HELLO has no version: {seen}"
    );

    // This build's agent: version 2 frames, and its software version in the inventory.
    let mut new = Conn::open(&d);
    new.send(&hello("new-agent", "g2", Some("9.8.7-test")), FRAME_VERSION);
    let (head, m) = new.recv().expect("an answer to the HELLO");
    assert!(matches!(m, Message::Welcome(_)), "{m:?}");
    assert_eq!(head.version, FRAME_VERSION);
    let seen = agent_seen(&d, "g2");
    assert_eq!(seen["agent"], "new-agent");
    assert_eq!(seen["version"], "9.8.7-test");
    assert_eq!(seen["connected"], true);

    // Its reports (CONTROL op report, version 2 only): kept and shown; one with impossible
    // numbers is dropped and the session goes on.
    let report = |arg: &str| {
        Message::Control(Control {
            group: "g2".into(),
            op: ControlOp::Report,
            arg: arg.into(),
        })
    };
    new.send(
        &report(r#"{"mode":"bitmap","rpo_seconds":12.5,"dirty_regions":4,"at_ms":1}"#),
        FRAME_VERSION,
    );
    new.send(
        &report(r#"{"mode":"resync","sync_percent":250}"#),
        FRAME_VERSION,
    );
    let seen = wait_for(|| {
        let s = agent_seen(&d, "g2");
        (!s["report"].is_null()).then_some(s)
    });
    assert_eq!(seen["report"]["mode"], "bitmap", "{seen}");
    assert_eq!(seen["report"]["rpo_seconds"], 12.5);
    assert_eq!(seen["report"]["dirty_regions"], 4);
    assert!(
        d.log_text().contains("dropping the agent's report"),
        "the bad report is logged"
    );
    // The session is still up: a batch is acknowledged.
    new.send(&batch("g2", 1, 0x21), FRAME_VERSION);
    loop {
        match new.recv().expect("an ACK") {
            (_, Message::Ack(a)) => {
                assert_eq!(a.durable, Seq(1));
                break;
            }
            (_, Message::Control(_)) => continue,
            (_, m) => panic!("expected ACK, got {m:?}"),
        }
    }

    // A version 1 frame in a version 2 session is refused, and its batch applies nothing.
    new.send(&batch("g2", 2, 0x22), 1);
    let (_, m) = new.recv().expect("an ERROR");
    let Message::Error(e) = m else {
        panic!("expected ERROR, got {m:?}")
    };
    assert_eq!(e.code, ErrorCode::Protocol, "{}", e.message);
    assert!(e.message.contains("frame version"), "{}", e.message);
    assert!(new.recv().is_none(), "the session should be closed");
    // The version is kept once the agent has gone.
    let seen = agent_seen(&d, "g2");
    assert_eq!(seen["version"], "9.8.7-test");
    assert_eq!(seen["connected"], false);
    let (code, body) = d.control_get("/v1/groups/g2/points");
    assert_eq!(code, 200, "{body}");
    let points: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        points["durable_seq"], 1,
        "nothing of the bad frame applied: {body}"
    );

    // A version 1 session may not send a report: op 7 is version 2's.
    let mut old2 = Conn::open(&d);
    old2.send(&hello("old-agent-2", "g3", None), 1);
    let (_, m) = old2.recv().expect("WELCOME");
    assert!(matches!(m, Message::Welcome(_)), "{m:?}");
    let r = Message::Control(Control {
        group: "g3".into(),
        op: ControlOp::Report,
        arg: "{}".into(),
    });
    old2.send(&r, 1);
    let e = loop {
        match old2.recv().expect("an ERROR") {
            (_, Message::Error(e)) => break e,
            (_, Message::Control(_)) => continue,
            (_, m) => panic!("expected ERROR, got {m:?}"),
        }
    };
    assert_eq!(e.code, ErrorCode::Protocol, "{}", e.message);
    assert!(e.message.contains("report"), "{}", e.message);

    // A version this build does not read: ERROR in version 1, which every agent reads.
    let mut future = Conn::open(&d);
    let mut f = encode_frame_version(1, FrameKind::Hello, &[]);
    f[4] = FRAME_VERSION as u8 + 1;
    let crc = crc32c::crc32c(&f[..20]);
    f[20..24].copy_from_slice(&crc.to_le_bytes());
    future.0.write_all(&f).unwrap();
    let (head, m) = future.recv().expect("an ERROR");
    assert_eq!(head.version, 1);
    let Message::Error(e) = m else {
        panic!("expected ERROR, got {m:?}")
    };
    assert_eq!(e.code, ErrorCode::Protocol, "{}", e.message);
    assert!(
        e.message.contains(&(FRAME_VERSION + 1).to_string()),
        "{}",
        e.message
    );

    // An agent of version 2 (before the dedup window): its WELCOME is version 2's, which has
    // no window field (a version 3 WELCOME restamped would carry 4 bytes it cannot read).
    let mut v2 = Conn::open(&d);
    v2.send(&hello("v2-agent", "g4", Some("0.2")), 2);
    let (head, m) = v2.recv().expect("an answer to the HELLO");
    assert_eq!(head.version, 2);
    let Message::Welcome(w) = m else {
        panic!("expected WELCOME, got {m:?}")
    };
    assert_eq!((w.groups.len(), w.dedup_window), (1, 0));
}

/// The next frame that is not an ACK.
fn next_not_ack(c: &mut Conn) -> Message {
    loop {
        match c.recv().expect("a frame") {
            (_, Message::Ack(_)) => continue,
            (_, m) => return m,
        }
    }
}

#[test]
fn tag_now_is_answered_by_the_agents_tag_or_its_refusal() {
    let work = tempdir();
    let d = Mtd::start(work.path());
    let mut agent = Conn::open(&d);
    agent.send(&hello("tagging-agent", "g1", Some("1.0")), FRAME_VERSION);
    assert!(matches!(next_not_ack(&mut agent), Message::Welcome(_)));
    agent.send(&batch("g1", 1, 0x31), FRAME_VERSION);

    // The agent refuses: the request fails with the agent's why, and the session goes on.
    let ask = |name: &'static str| {
        let control = d.control.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new("curl")
                .args(["-sS", "--max-time", "60", "-X", "POST", "--unix-socket"])
                .arg(&control)
                .args([
                    "-w",
                    "\n%{http_code}",
                    "-H",
                    "Content-Type: application/json",
                ])
                .args(["-d", &format!(r#"{{"tag": "{name}", "timeout_secs": 30}}"#)])
                .arg("http://localhost/v1/groups/g1/tag")
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    let req = ask("t1");
    let c = match next_not_ack(&mut agent) {
        Message::Control(c) => c,
        m => panic!("expected the tag request, got {m:?}"),
    };
    assert_eq!(
        (c.op, c.group.as_str(), c.arg.as_str()),
        (ControlOp::TagRequest, "g1", "t1")
    );
    agent.send(
        &Message::Error(ErrorMsg {
            code: ErrorCode::Busy,
            message: format!("{TAG_REFUSED_PREFIX}g1: t1: the agent is in bitmap mode"),
        }),
        FRAME_VERSION,
    );
    let answer = req.join().unwrap();
    assert!(answer.ends_with("409"), "{answer}");
    assert!(
        answer.contains("refused the tag request") && answer.contains("bitmap mode"),
        "{answer}"
    );

    // Still the same session: the agent's tag answers the next request with its seq.
    let req = ask("t2");
    let c = match next_not_ack(&mut agent) {
        Message::Control(c) => c,
        m => panic!("expected the tag request, got {m:?}"),
    };
    assert_eq!(c.arg, "t2");
    agent.send(
        &Message::Tag(Tag {
            group: "g1".into(),
            generation: 1,
            tag: TagInfo {
                seq: Seq(1),
                kind: TagKind::User,
                timestamp_ms: 2_000,
                name: "t2".into(),
            },
        }),
        FRAME_VERSION,
    );
    let answer = req.join().unwrap();
    assert!(answer.ends_with("200"), "{answer}");
    assert!(answer.contains(r#""seq":1"#), "{answer}");
    assert_eq!(
        d.log_text().matches("session started").count(),
        1,
        "the refusal ended the session"
    );
}
