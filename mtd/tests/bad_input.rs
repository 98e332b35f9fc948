//! Bad input over the wire: each case gets an ERROR frame (or a closed connection), a log line that
//! names the peer and the reason, applies nothing, and does not disturb another session.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use rewind_formats::frame::{encode_frame, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use rewind_formats::message::*;
use rewind_formats::{RecordKind, RecordRef, Seq};

const DISK: u64 = 1 << 20;

/// Sends one kind of bad input on an open session.
type BadSender = Box<dyn Fn(&mut Conn)>;

struct Conn(UnixStream);

impl Conn {
    fn open(d: &Daemon) -> Conn {
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
        let mut hdr = [0u8; FRAME_HEADER_LEN];
        if self.0.read_exact(&mut hdr).is_err() {
            return None;
        }
        let h = FrameHeader::decode(&hdr).expect("daemon sends valid frames");
        let mut payload = vec![0u8; h.payload_len as usize];
        self.0.read_exact(&mut payload).expect("payload");
        h.verify_payload(&payload).unwrap();
        Some(Message::decode(h.kind, &payload).unwrap())
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
        groups: vec![HelloGroup {
            group: group.into(),
            generation,
            last_acked: Seq(0),
            disks: vec![DiskInfo {
                disk: "sda".into(),
                size_bytes: size,
            }],
        }],
    })
}

fn batch(group: &str, generation: u64, first: u64, disk: u16, offset: u64, fill: u8) -> Message {
    let data = vec![fill; 4096];
    let recs = [RecordRef {
        disk,
        kind: RecordKind::Data,
        offset,
        len: 4096,
        data: &data,
    }];
    Message::Batch(Batch::build(group, generation, Seq(first), 1_000, &recs, 1))
}

/// The durable seq a fresh session is welcomed with.
fn durable(d: &Daemon, group: &str, generation: u64) -> u64 {
    let mut c = Conn::open(d);
    let w = c.hello(group, generation, DISK).expect("welcome");
    w.groups[0].durable.0
}

#[test]
fn bad_input_is_refused_and_applies_nothing() {
    let work = tempdir();
    let d = Daemon::start(work.path(), "uring", &[]);

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
    assert!(c.expect_error(ErrorCode::StaleGeneration).contains("stale"));
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
    assert!(e.contains("belongs to agent test-agent"), "{e}");

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
    let d = Daemon::start(work.path(), "sync", &[]);
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
