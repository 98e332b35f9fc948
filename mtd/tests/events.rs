//! `GET /v1/events`: server-sent events on the unix socket and on the TCP control listener. Two
//! readers subscribe, an agent connects, sends a resync's tags and a recovery point, goes away;
//! both read the same events in order, each one JSON object.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::tls_agent::*;
use common::*;
use rewind_formats::message::*;
use rewind_formats::{Batch, RecordKind, RecordRef, Seq, TagInfo, TagKind};

fn mtd() -> std::process::Command {
    std::process::Command::new(bin("rewind-mtd"))
}

/// Read `data:` lines as JSON until `done` says the events so far are enough.
fn read_events(
    r: impl Read,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = BufReader::new(r).lines();
    let mut header_done = false;
    while !done(&out) {
        assert!(Instant::now() < deadline, "events so far: {out:?}");
        let line = lines.next().expect("stream ended").expect("read");
        if !header_done {
            if line.is_empty() {
                header_done = true;
            } else if line.starts_with("HTTP/") {
                assert!(line.contains(" 200 "), "{line}");
            } else if line.to_ascii_lowercase().starts_with("content-type:") {
                assert!(line.contains("text/event-stream"), "{line}");
            }
            continue;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            out.push(serde_json::from_str(data).expect("one JSON object per event"));
        }
    }
    out
}

const REQUEST: &str = "GET /v1/events HTTP/1.0\r\nHost: localhost\r\n\r\n";

fn kinds(evs: &[serde_json::Value]) -> Vec<&str> {
    evs.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

fn has_all(evs: &[serde_json::Value]) -> bool {
    kinds(evs).contains(&"group.disconnected")
}

#[test]
fn events_reach_readers_on_both_transports() {
    let work = tempdir();
    let ca = work.path().join("ca");
    run_ok(mtd().args(["ca", "init", "--dir"]).arg(&ca));
    for (flag, name) in [("--site", "site1"), ("--agent", "web01")] {
        run_ok(mtd().args(["ca", "issue", flag, name, "--dir"]).arg(&ca));
    }
    let d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            ca.to_str().unwrap(),
            "--control-listen",
            "127.0.0.1:0",
        ],
    );
    let lines = d.ready_lines();
    let agents = lines[0].clone();
    let control_tcp = lines
        .iter()
        .find_map(|l| l.strip_prefix("control-tcp "))
        .unwrap()
        .to_string();

    // Reader 1: the unix socket.
    let mut unix = std::os::unix::net::UnixStream::connect(&d.control).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    unix.write_all(REQUEST.as_bytes()).unwrap();
    // Reader 2: TCP with the site's certificate.
    let s = ca.join("sites/site1");
    let site = rewind_mtd::tls::client_config(
        &ca.join("ca.crt"),
        &s.join("site.crt"),
        &s.join("site.key"),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(&control_tcp).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(
        site,
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(REQUEST.as_bytes()).unwrap();
    tls.flush().unwrap();
    // Both subscriptions exist once their headers came back (the handler subscribes first).
    let unix_r = std::thread::spawn(move || read_events(unix, has_all));
    let tls_r = std::thread::spawn(move || read_events(tls, has_all));
    std::thread::sleep(Duration::from_millis(500));

    let agent = rewind_mtd::tls::client_config(
        &ca.join("ca.crt"),
        &ca.join("agents/web01.crt"),
        &ca.join("agents/web01.key"),
    )
    .unwrap();
    let mut a = connect(&agents, agent).unwrap();
    send(&mut a, &hello("web01", "g1")).unwrap();
    assert!(matches!(recv(&mut a), Some(Message::Welcome(_))));
    let data = vec![7u8; 4096];
    let recs = [RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset: 0,
        len: 4096,
        data: &data,
    }];
    let tag = |seq: u64, kind: TagKind, name: &str| {
        Message::Tag(Tag {
            group: "g1".into(),
            generation: 1,
            tag: TagInfo {
                seq: Seq(seq),
                kind,
                timestamp_ms: 1_000,
                name: name.into(),
            },
        })
    };
    send(
        &mut a,
        &Message::Batch(Batch::build("g1", 1, Seq(1), 1_000, &recs, 1)),
    )
    .unwrap();
    send(&mut a, &tag(1, TagKind::SyncBegin, "initial-sync")).unwrap();
    send(
        &mut a,
        &Message::Batch(Batch::build("g1", 1, Seq(2), 1_000, &recs, 1)),
    )
    .unwrap();
    send(&mut a, &tag(2, TagKind::SyncEnd, "initial-sync")).unwrap();
    send(&mut a, &tag(2, TagKind::User, "before-upgrade")).unwrap();
    loop {
        match recv(&mut a) {
            Some(Message::Ack(k)) if k.durable.0 >= 2 => break,
            Some(_) => continue,
            None => panic!("session closed"),
        }
    }
    // Tags are applied in order after the batches: wait until the point exists, then leave.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !inspect(&d.data_dir).to_string().contains("before-upgrade") {
        assert!(Instant::now() < deadline, "tag never durable");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.conn.send_close_notify();
    let _ = a.flush();
    drop(a);

    let want = [
        "group.connected",
        "sync.started",
        "sync.finished",
        "point.tagged",
        "group.disconnected",
    ];
    for (which, r) in [("unix", unix_r), ("tcp", tls_r)] {
        let evs = r.join().expect("reader");
        assert_eq!(kinds(&evs), want, "{which}: {evs:?}");
        for e in &evs {
            assert_eq!(e["group"], "g1", "{which}: {e}");
            assert!(e["time_ms"].as_u64().unwrap() > 0);
        }
        assert_eq!(evs[0]["agent"], "web01");
        assert!(evs[0]["host"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(evs[1]["seq"], 1);
        assert_eq!(evs[3]["name"], "before-upgrade");
        assert_eq!(evs[3]["tag_kind"], "user");
        assert!(evs[4]["reason"].is_string());
    }
}
