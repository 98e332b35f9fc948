//! Bad input over the wire: each case gets an ERROR frame (or a closed connection), a log line that
//! names the peer and the reason, applies nothing, and does not disturb another session.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use rewind_formats::frame::{encode_frame, FrameHeader, FrameKind};
use rewind_formats::message::*;
use rewind_formats::{RecordKind, RecordRef, Seq};

const DISK: u64 = 1 << 20;

/// Sends one kind of bad input on an open session.
type BadSender = Box<dyn Fn(&mut Conn)>;

struct Conn(UnixStream);

impl Conn {
    fn open(d: &Mtd) -> Conn {
        Conn::reopen(&d.sock)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("send");
    }

    fn send_msg(&mut self, m: &Message) {
        self.send(&m.to_frame());
    }

    /// The next message, or None once the daemon closed the connection.
    fn recv(&mut self) -> Option<Message> {
        recv_message(&mut self.0)
    }

    fn hello(&mut self, group: &str, generation: u64, size: u64) -> Option<Welcome> {
        self.send_msg(&hello(group, generation, size));
        match self.recv()? {
            Message::Welcome(w) => Some(w),
            Message::Error(e) => panic!("unexpected ERROR {:?}: {}", e.code, e.message),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn reopen(sock: &std::path::Path) -> Conn {
        let s = UnixStream::connect(sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn(s)
    }

    /// Expect an ERROR with this code, then the connection closed.
    fn expect_error(&mut self, code: ErrorCode) -> String {
        loop {
            match self.recv() {
                Some(Message::Error(e)) => {
                    assert_eq!(e.code, code, "error message: {}", e.message);
                    assert!(self.recv().is_none(), "connection should close after ERROR");
                    return e.message;
                }
                Some(Message::Ack(_)) => continue,
                other => panic!("expected ERROR {code:?}, got {other:?}"),
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

fn hello(group: &str, generation: u64, size: u64) -> Message {
    Message::Hello(Hello {
        agent: "test-agent".into(),
        software: None,
        dedup_window: 0,
        framed_records: false,
        groups: vec![HelloGroup {
            group: group.into(),
            generation,
            last_acked: Seq(0),
            epoch: 0,
            disks: vec![DiskInfo {
                disk: "sda".into(),
                size_bytes: size,
            }],
        }],
    })
}

fn batch(group: &str, generation: u64, first: u64, disk: u16, offset: u64, fill: u8) -> Message {
    batch_at(group, generation, first, disk, offset, fill, 1_000)
}

/// One 4 KiB record at `offset` filled with `fill`, stamped `timestamp_ms`.
fn batch_at(
    group: &str,
    generation: u64,
    first: u64,
    disk: u16,
    offset: u64,
    fill: u8,
    timestamp_ms: u64,
) -> Message {
    let data = vec![fill; 4096];
    let recs = [RecordRef {
        disk,
        kind: RecordKind::Data,
        offset,
        len: 4096,
        data: &data,
    }];
    Message::Batch(Batch::build(
        group,
        generation,
        Seq(first),
        timestamp_ms,
        &recs,
        1,
    ))
}

/// The durable seq a fresh session is welcomed with.
fn durable(d: &Mtd, group: &str, generation: u64) -> u64 {
    let mut c = Conn::open(d);
    let w = c.hello(group, generation, DISK).expect("welcome");
    w.groups[0].durable.0
}

#[test]
fn bad_input_is_refused_and_applies_nothing() {
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "uring", &[]);

    // A well-behaved session on another group, kept open through all the bad ones.
    let mut good = Conn::open(&d);
    good.hello("good", 1, DISK).unwrap();
    let mut good_seq = 0;
    let mut good_step = |good: &mut Conn| {
        good_seq += 1;
        good.send_msg(&batch("good", 1, good_seq, 0, 0, good_seq as u8));
        good.wait_ack(good_seq);
    };
    good_step(&mut good);

    // Seed the victim group with seq 1 at generation 5.
    {
        let mut c = Conn::open(&d);
        c.hello("victim", 5, DISK).unwrap();
        c.send_msg(&batch("victim", 5, 1, 0, 0, 0xaa));
        c.wait_ack(1);
    }
    let cases: Vec<(&str, ErrorCode, BadSender)> = vec![
        (
            "bad payload crc",
            ErrorCode::BadChecksum,
            Box::new(|c: &mut Conn| {
                let mut f = batch("victim", 5, 2, 0, 4096, 1).to_frame();
                let last = f.len() - 1;
                f[last] ^= 0xff;
                c.send(&f);
            }),
        ),
        (
            "bad header crc",
            ErrorCode::BadChecksum,
            Box::new(|c: &mut Conn| {
                let mut f = batch("victim", 5, 2, 0, 4096, 1).to_frame();
                f[8] ^= 0x01;
                c.send(&f);
            }),
        ),
        (
            "oversized length",
            ErrorCode::Protocol,
            Box::new(|c: &mut Conn| {
                let mut h = FrameHeader::for_payload(FrameKind::Batch, b"x").encode();
                h[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes());
                let crc = crc32c::crc32c(&h[..20]);
                h[20..24].copy_from_slice(&crc.to_le_bytes());
                c.send(&h);
            }),
        ),
        (
            "unknown kind",
            ErrorCode::Protocol,
            Box::new(|c: &mut Conn| {
                let mut f = encode_frame(FrameKind::Ack, b"");
                f[6..8].copy_from_slice(&99u16.to_le_bytes());
                let crc = crc32c::crc32c(&f[..20]);
                f[20..24].copy_from_slice(&crc.to_le_bytes());
                c.send(&f);
            }),
        ),
        (
            "offset past the disk end",
            ErrorCode::OutOfRange,
            Box::new(|c: &mut Conn| {
                c.send_msg(&batch("victim", 5, 2, 0, DISK, 1));
            }),
        ),
        (
            "record for an unknown disk",
            ErrorCode::UnknownDisk,
            Box::new(|c: &mut Conn| {
                c.send_msg(&batch("victim", 5, 2, 3, 0, 1));
            }),
        ),
        (
            "seq gap",
            ErrorCode::SeqGap,
            Box::new(|c: &mut Conn| {
                c.send_msg(&batch("victim", 5, 7, 0, 0, 1));
            }),
        ),
        (
            "batch for a group not in HELLO",
            ErrorCode::UnknownGroup,
            Box::new(|c: &mut Conn| {
                c.send_msg(&batch("good", 1, 2, 0, 0, 1));
            }),
        ),
        (
            "garbage bytes",
            ErrorCode::Protocol,
            Box::new(|c: &mut Conn| {
                c.send(&[0x5a; 100]);
            }),
        ),
    ];
    for (name, code, bad) in &cases {
        let mut c = Conn::open(&d);
        c.hello("victim", 5, DISK).unwrap();
        bad(&mut c);
        let msg = c.expect_error(*code);
        eprintln!("{name}: {msg}");
        assert_eq!(durable(&d, "victim", 5), 1, "{name} applied something");
        good_step(&mut good);
    }

    // Refused at HELLO: wrong disk size, stale generation, a generation from the future.
    let mut c = Conn::open(&d);
    c.send_msg(&hello("victim", 5, DISK * 2));
    assert!(c.expect_error(ErrorCode::WrongDiskSize).contains("1048576"));
    let mut c = Conn::open(&d);
    c.send_msg(&hello("victim", 4, DISK));
    // Older than the group: its source was fenced (its own code); newer: unknown here.
    assert!(c.expect_error(ErrorCode::Fenced).contains("stale"));
    let mut c = Conn::open(&d);
    c.send_msg(&hello("victim", 6, DISK));
    c.expect_error(ErrorCode::StaleGeneration);
    // Another agent may not feed a group that belongs to this one (busy or not).
    let mut c = Conn::open(&d);
    let mut other = hello("good", 1, DISK);
    if let Message::Hello(h) = &mut other {
        h.agent = "other-agent".into();
    }
    c.send_msg(&other);
    let e = c.expect_error(ErrorCode::Forbidden);
    // ... and is not told whose it is.
    assert!(
        e.contains("belongs to another agent") && !e.contains("test-agent"),
        "{e}"
    );

    // Connection cut mid-frame: nothing applied, and the group is free again afterwards.
    {
        let mut c = Conn::open(&d);
        c.hello("victim", 5, DISK).unwrap();
        let f = batch("victim", 5, 2, 0, 4096, 1).to_frame();
        c.send(&f[..f.len() / 2]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(durable(&d, "victim", 5), 1);
    good_step(&mut good);

    let log = d.log_text();
    for reason in [
        "checksum",
        "too large",
        "unknown kind",
        "past the disk end",
        "disk index 3",
        "expected 2",
        "mid-frame",
        "stale",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("closing session") && l.contains("peer") && l.contains(reason)),
            "no log line naming the peer and {reason:?}:\n{log}"
        );
    }

    // The same agent reconnecting (its old connection not yet seen dead) takes the group over:
    // the old session is stopped with an ERROR, the new one resumes at the durable seq.
    let mut again = Conn::open(&d);
    let w = again.hello("good", 1, DISK).expect("welcome");
    assert_eq!(w.groups[0].durable.0, good_seq);
    assert!(good.expect_error(ErrorCode::Busy).contains("superseded"));

    // The victim's one good write reads back; nothing else landed.
    drop(again);
    let img = work.path().join("victim.img");
    assert_ok(&dump(&d.data_dir, "victim", "sda", "latest", &img), "dump");
    let bytes = std::fs::read(&img).unwrap();
    assert!(bytes[..4096].iter().all(|&b| b == 0xaa));
    assert!(bytes[4096..].iter().all(|&b| b == 0));
}

/// Resync's target half: HASHES from an agent is answered with the target's own hashes of the
/// same range, as of everything the agent sent; a range past the end or too large is refused.
#[test]
fn hashes_are_answered_with_the_targets_hashes() {
    use rewind_formats::hash::block_hash;
    let work = tempdir();
    let d = Mtd::start_engine(work.path(), "sync", &[]);
    let mut c = Conn::open(&d);
    c.hello("h", 1, DISK).unwrap();
    // Blocks 1 and 5 written (the batch is not waited for: HASHES must see it anyway).
    c.send_msg(&batch("h", 1, 1, 0, 4096, 0x11));
    c.send_msg(&batch("h", 1, 2, 0, 5 * 4096, 0x55));
    let mut disk = vec![0u8; 8 * 4096];
    disk[4096..8192].fill(0x11);
    disk[5 * 4096..6 * 4096].fill(0x55);
    // The agent's view: block 1 the same, block 5 different, block 7 different.
    let mut mine = disk.clone();
    mine[5 * 4096] = 0;
    mine[7 * 4096] = 9;
    let req = Hashes {
        group: "h".into(),
        disk: 0,
        offset: 0,
        block_size: 4096,
        hashes: mine.chunks(4096).map(block_hash).collect(),
    };
    c.send_msg(&Message::Hashes(req.clone()));
    let reply = loop {
        match c.recv() {
            Some(Message::Hashes(h)) => break h,
            Some(Message::Ack(_)) => continue,
            other => panic!("expected HASHES, got {other:?}"),
        }
    };
    let want: Vec<u64> = disk.chunks(4096).map(block_hash).collect();
    assert_eq!(reply.hashes, want);
    assert_eq!((reply.offset, reply.block_size, reply.disk), (0, 4096, 0));
    let differ: Vec<usize> = (0..8)
        .filter(|&i| req.hashes[i] != reply.hashes[i])
        .collect();
    assert_eq!(differ, vec![5, 7]);

    // Past the end of the disk: refused, nothing else changes.
    let mut bad = req.clone();
    bad.offset = DISK - 4096;
    c.send_msg(&Message::Hashes(bad));
    assert!(c
        .expect_error(ErrorCode::OutOfRange)
        .contains("past the end"));
    let mut c = Conn::open(&d);
    c.hello("h", 1, DISK).unwrap();
    let mut big = req;
    big.block_size = 1 << 20;
    big.hashes = vec![0; 65];
    c.send_msg(&Message::Hashes(big));
    assert!(c.expect_error(ErrorCode::OutOfRange).contains("blocks of"));
    assert_eq!(durable(&d, "h", 1), 2);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A batch stamped now (retention counts from the source time).
fn batch_now(
    group: &str,
    generation: u64,
    first: u64,
    disk: u16,
    offset: u64,
    fill: u8,
) -> Message {
    batch_at(group, generation, first, disk, offset, fill, now_ms())
}

fn sync_tag(group: &str, seq: u64, kind: TagKind, name: &str) -> Message {
    Message::Tag(Tag {
        group: group.into(),
        generation: 1,
        tag: TagInfo {
            seq: Seq(seq),
            kind,
            timestamp_ms: now_ms(),
            name: name.into(),
        },
    })
}

fn dump_err(d: &Mtd, at: &str) -> Option<String> {
    let img = d.data_dir.with_extension("img");
    let out = dump(&d.data_dir, "r", "sda", at, &img);
    let _ = std::fs::remove_file(&img);
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Points inside a resync (between its sync-begin and sync-end tags) are refused as not
/// recoverable, everywhere a point is named; an unfinished resync makes the group inconsistent,
/// also after its start has been merged into the base and the daemon restarted.
#[test]
fn resync_windows_are_not_recoverable() {
    let work = tempdir();
    let mut d = Mtd::start_engine(
        work.path(),
        "sync",
        &[
            "--retention",
            "1h",
            "--seal-after",
            "300ms",
            "--merge-interval",
            "100ms",
            "--segment-size",
            "1MiB",
        ],
    );
    let mut c = Conn::open(&d);
    c.hello("r", 1, DISK).unwrap();
    c.send_msg(&batch_now("r", 1, 1, 0, 0, 1));
    c.send_msg(&batch_now("r", 1, 2, 0, 4096, 2));
    // An initial sync of seqs 3..=5.
    c.send_msg(&batch_now("r", 1, 3, 0, 8192, 3));
    c.send_msg(&sync_tag("r", 3, TagKind::SyncBegin, "initial-sync"));
    c.send_msg(&batch_now("r", 1, 4, 0, 12288, 4));
    c.send_msg(&batch_now("r", 1, 5, 0, 16384, 5));
    c.send_msg(&sync_tag("r", 5, TagKind::SyncEnd, "initial-sync"));
    c.send_msg(&batch_now("r", 1, 6, 0, 0, 6));
    c.wait_ack(6);
    let g = group_json(&inspect(&d.data_dir), "r").clone();
    assert_eq!(g["consistent"], true);
    assert_eq!(g["not_recoverable"][0]["from_seq"], 3);
    assert_eq!(g["not_recoverable"][0]["to_seq"], 5);
    for ok in ["seq:2", "seq:5", "seq:6", "latest"] {
        assert_eq!(dump_err(&d, ok), None, "{ok}");
    }
    for bad in ["seq:3", "seq:4"] {
        let e = dump_err(&d, bad).expect("refused");
        assert!(
            e.contains("not recoverable") && e.contains("initial-sync from seq 3 to 5"),
            "{e}"
        );
    }
    // The API says the same, and an overlay cannot be made there.
    let p: serde_json::Value =
        serde_json::from_slice(&run_ok(d.rewind_cmd().args(["--json", "points", "r"])).stdout)
            .unwrap();
    assert_eq!(p["not_recoverable"][0]["to_seq"], 5, "{p}");
    assert!(
        p["tags"].as_array().unwrap().is_empty(),
        "sync markers are not named points"
    );
    let o = run(d
        .rewind_cmd()
        .args(["overlay", "create", "x", "r/sda@seq:4"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not recoverable"));

    // A resync that has not finished: from its start on nothing is recoverable.
    c.send_msg(&batch_now("r", 1, 7, 0, 4096, 7));
    c.send_msg(&sync_tag("r", 7, TagKind::SyncBegin, "resync"));
    c.send_msg(&batch_now("r", 1, 8, 0, 8192, 8));
    c.wait_ack(8);
    let e = dump_err(&d, "latest").expect("latest refused mid-resync");
    assert!(
        e.contains("resync that began at seq 7 and has not finished"),
        "{e}"
    );
    assert_eq!(dump_err(&d, "seq:6"), None);
    let text =
        String::from_utf8_lossy(&run_ok(d.rewind_cmd().args(["points", "r"])).stdout).into_owned();
    assert!(text.contains("NOT CONSISTENT"), "{text}");

    // Let retention merge past the resync's start , restart:
    // still not consistent.
    drop(c);
    run_ok(d.rewind_cmd().args(["retention", "r", "1s"]));
    let t0 = std::time::Instant::now();
    while group_json(&inspect(&d.data_dir), "r")["horizon_seq"]
        .as_u64()
        .unwrap()
        < 8
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no merge");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.terminate();
    d.restart();
    let g = group_json(&inspect(&d.data_dir), "r").clone();
    assert_eq!(g["consistent"], false, "{g}");
    assert_eq!(g["not_recoverable"][0]["from_seq"], 7);
    assert!(dump_err(&d, "latest").is_some());
    // The resync finishes: consistent again.
    let mut c = Conn::open(&d);
    c.hello("r", 1, DISK).unwrap();
    c.send_msg(&batch_now("r", 1, 9, 0, 12288, 9));
    c.send_msg(&sync_tag("r", 9, TagKind::SyncEnd, "resync"));
    c.wait_ack(9);
    drop(c);
    let t0 = std::time::Instant::now();
    while group_json(&inspect(&d.data_dir), "r")["consistent"] != true {
        assert!(t0.elapsed() < Duration::from_secs(10), "tag not durable");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dump_err(&d, "latest"), None);
}
