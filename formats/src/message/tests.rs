use super::*;
use crate::frame::decode_frame;
use crate::{Seq, MAX_BATCH_RECORDS, MAX_BATCH_UNCOMPRESSED};

fn samples() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            agent: "host-a".into(),
            software: Some("0.1.0+abc".into()),
            dedup_window: 0,
            framed_records: false,
            groups: vec![
                HelloGroup {
                    group: "web".into(),
                    generation: 3,
                    last_acked: Seq(99),
                    epoch: 0,
                    disks: vec![
                        DiskInfo {
                            disk: "sda".into(),
                            size_bytes: 1 << 30,
                        },
                        DiskInfo {
                            disk: "sdb".into(),
                            size_bytes: 512,
                        },
                    ],
                },
                HelloGroup {
                    group: "db".into(),
                    generation: 0,
                    last_acked: Seq(0),
                    epoch: 0,
                    disks: vec![],
                },
            ],
        }),
        Message::Welcome(Welcome {
            dedup_window: 0,
            framed_records: false,
            groups: vec![
                WelcomeGroup {
                    group: "web".into(),
                    generation: 3,
                    status: ResumeStatus::Resume,
                    durable: Seq(97),
                },
                WelcomeGroup {
                    group: "db".into(),
                    generation: 1,
                    status: ResumeStatus::ResyncNeeded,
                    durable: Seq(0),
                },
            ],
        }),
        Message::Batch(Batch {
            group: "web".into(),
            generation: 3,
            first_seq: Seq(100),
            record_count: 2,
            timestamp_ms: 1_700_000_000_000,
            uncompressed_len: 64,
            compressed: vec![1, 2, 3],
        }),
        Message::Tag(Tag {
            group: "web".into(),
            generation: 3,
            tag: TagInfo {
                seq: Seq(101),
                kind: TagKind::AppConsistent,
                timestamp_ms: 5,
                name: "pre-upgrade".into(),
            },
        }),
        Message::Ack(Ack {
            group: "web".into(),
            durable: Seq(101),
        }),
        Message::Hashes(Hashes {
            group: "web".into(),
            disk: 1,
            offset: 65536,
            block_size: 65536,
            hashes: vec![1, u64::MAX, 0],
        }),
        Message::Control(Control {
            group: "web".into(),
            op: ControlOp::TagRequest,
            arg: "before patch Tuesday".into(),
        }),
        Message::Error(ErrorMsg {
            code: ErrorCode::SeqGap,
            message: "expected seq 102, got 105".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips_through_a_frame() {
    for m in samples() {
        let frame = m.to_frame();
        let (head, payload, used) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(head.kind, m.kind());
        assert_eq!(
            Message::decode_version(head.version, head.kind, payload),
            Ok(m)
        );
    }
}

#[test]
fn version_1_hello_has_no_software_and_round_trips_without_it() {
    let Message::Hello(mut h) = samples().remove(0) else {
        panic!("the first sample is a HELLO");
    };
    let v2 = Message::Hello(h.clone()).to_frame_version(2);
    let v1 = Message::Hello(h.clone()).to_frame_version(1);
    // Version 2 adds one length byte and the text, right after the agent name.
    assert_eq!(v2.len(), v1.len() + 1 + "0.1.0+abc".len());
    let (head, payload, _) = decode_frame(&v1).unwrap().unwrap();
    assert_eq!(head.version, 1);
    h.software = None;
    assert_eq!(
        Message::decode_version(1, FrameKind::Hello, payload),
        Ok(Message::Hello(h.clone()))
    );
    // A version 1 payload read as version 2 is damage, not a HELLO.
    assert!(Message::decode_version(2, FrameKind::Hello, payload).is_err());
    // No software in a version 2 HELLO is an empty field, read back as None.
    let empty = Message::Hello(h.clone()).to_frame_version(2);
    let (_, payload, _) = decode_frame(&empty).unwrap().unwrap();
    assert_eq!(
        Message::decode_version(2, FrameKind::Hello, payload),
        Ok(Message::Hello(h))
    );
}

#[test]
fn version_4_hello_carries_each_groups_epoch_and_older_ones_mean_0() {
    let Message::Hello(mut h) = samples().remove(0) else {
        panic!("the first sample is a HELLO");
    };
    let v3 = Message::Hello(h.clone()).encode_payload_version(3);
    h.groups[0].epoch = 7;
    h.groups[1].epoch = u64::MAX;
    let v4 = Message::Hello(h.clone()).encode_payload_version(4);
    // Eight bytes per group, nothing else.
    assert_eq!(v4.len(), v3.len() + 8 * h.groups.len());
    assert_eq!(
        Message::decode_version(4, FrameKind::Hello, &v4),
        Ok(Message::Hello(h.clone()))
    );
    // An older HELLO has no epoch: it reads as 0.
    let Ok(Message::Hello(old)) = Message::decode_version(3, FrameKind::Hello, &v3) else {
        panic!("a version 3 HELLO decodes");
    };
    assert!(old.groups.iter().all(|g| g.epoch == 0));
    // The two layouts are not interchangeable.
    assert!(Message::decode_version(3, FrameKind::Hello, &v4).is_err());
    assert!(Message::decode_version(4, FrameKind::Hello, &v3).is_err());
}

#[test]
fn version_5_hello_and_welcome_carry_the_framed_records_flag() {
    let mut samples = samples();
    let Message::Welcome(mut w) = samples.remove(1) else {
        panic!("the second sample is a WELCOME");
    };
    let Message::Hello(mut h) = samples.remove(0) else {
        panic!("the first sample is a HELLO");
    };
    let h4 = Message::Hello(h.clone()).encode_payload_version(4);
    let w4 = Message::Welcome(w.clone()).encode_payload_version(4);
    h.framed_records = true;
    w.framed_records = true;
    let h5 = Message::Hello(h.clone()).encode_payload_version(5);
    let w5 = Message::Welcome(w.clone()).encode_payload_version(5);
    // One byte each, nothing else.
    assert_eq!((h5.len(), w5.len()), (h4.len() + 1, w4.len() + 1));
    assert_eq!(
        Message::decode_version(5, FrameKind::Hello, &h5),
        Ok(Message::Hello(h.clone()))
    );
    assert_eq!(
        Message::decode_version(5, FrameKind::Welcome, &w5),
        Ok(Message::Welcome(w.clone()))
    );
    // Older versions have no flag: it reads as false.
    let Ok(Message::Welcome(old)) = Message::decode_version(4, FrameKind::Welcome, &w4) else {
        panic!("a version 4 WELCOME decodes");
    };
    assert!(!old.framed_records);
    // Bits this build does not know are refused.
    let mut unknown = w5.clone();
    *unknown.last_mut().unwrap() = 3;
    let e = Message::decode_version(5, FrameKind::Welcome, &unknown).unwrap_err();
    assert!(e.to_string().contains("only bit 0"), "{e}");
}

#[test]
#[should_panic(expected = "has no framed records flag")]
fn framed_records_cannot_be_granted_in_a_version_without_them() {
    let Message::Welcome(mut w) = samples().remove(1) else {
        panic!("the second sample is a WELCOME");
    };
    w.framed_records = true;
    Message::Welcome(w).encode_payload_version(4);
}

#[test]
#[should_panic(expected = "has no epoch")]
fn an_epoch_cannot_be_written_in_a_version_without_it() {
    let Message::Hello(mut h) = samples().remove(0) else {
        panic!("the first sample is a HELLO");
    };
    h.groups[0].epoch = 1;
    Message::Hello(h).encode_payload_version(3);
}

#[test]
fn hello_refuses_a_bad_software_version() {
    assert!(validate_software("0.1.0-rc.1+g1234abc").is_ok());
    assert!(validate_software("").is_ok());
    assert!(validate_software("has space").is_err());
    assert!(validate_software("tab\t").is_err());
    assert!(validate_software("é").is_err());
    assert!(validate_software(&"9".repeat(MAX_SOFTWARE_LEN + 1)).is_err());
    // On the wire: an agent that sends a control character is refused at decode.
    let mut payload = Message::Hello(Hello {
        agent: "a".into(),
        software: Some("v1".into()),
        dedup_window: 0,
        framed_records: false,
        groups: vec![],
    })
    .encode_payload();
    // agent name "a" is 2 bytes, then the software length (2) and "v1".
    assert_eq!(&payload[2..5], b"\x02v1");
    payload[4] = 0x07;
    assert!(matches!(
        Message::decode(FrameKind::Hello, &payload),
        Err(DecodeError::Invalid { .. })
    ));
    // And versions this build does not read are refused before anything is decoded.
    assert_eq!(
        Message::decode_version(FRAME_VERSION + 1, FrameKind::Ack, b""),
        Err(DecodeError::UnsupportedVersion(FRAME_VERSION + 1))
    );
}

#[test]
fn trailing_bytes_are_refused_for_every_kind() {
    for m in samples() {
        let mut p = m.encode_payload();
        p.push(0);
        assert!(
            matches!(
                Message::decode(m.kind(), &p),
                Err(DecodeError::Invalid { .. })
            ),
            "{:?}",
            m.kind()
        );
    }
}

#[test]
fn every_truncation_is_an_error() {
    for m in samples() {
        let p = m.encode_payload();
        for cut in 0..p.len() {
            assert!(
                Message::decode(m.kind(), &p[..cut]).is_err(),
                "{:?} cut {cut}",
                m.kind()
            );
        }
    }
}

#[test]
fn ack_layout_is_as_documented() {
    let m = Message::Ack(Ack {
        group: "g".into(),
        durable: Seq(0x0102_0304),
    });
    assert_eq!(m.encode_payload(), vec![1, b'g', 4, 3, 2, 1, 0, 0, 0, 0]);
}

#[test]
fn error_codes_map_to_wire_values_and_back() {
    assert_eq!(ErrorCode::Protocol.as_u16(), 1);
    assert_eq!(ErrorCode::Internal.as_u16(), 12);
    assert_eq!(ErrorCode::Other(77).as_u16(), 77);
    for v in 0..=20u16 {
        assert_eq!(ErrorCode::from_u16(v).as_u16(), v);
    }
    assert_eq!(ErrorCode::from_u16(0), ErrorCode::Other(0));
    assert_eq!(ErrorCode::from_u16(13), ErrorCode::Forbidden);
    assert_eq!(ErrorCode::from_u16(14), ErrorCode::Fenced);
    assert_eq!(ErrorCode::Fenced.as_u16(), 14);
    assert_eq!(ErrorCode::from_u16(15), ErrorCode::StaleEpoch);
    assert_eq!(ErrorCode::StaleEpoch.as_u16(), 15);
    assert_eq!(ErrorCode::from_u16(16), ErrorCode::Other(16));
    assert_eq!(ErrorCode::from_u16(8), ErrorCode::SeqGap);
}

fn hello_with(disks: Vec<DiskInfo>, groups: usize) -> Vec<u8> {
    // Every group is named "g": two groups make a duplicate.
    let g = |_| HelloGroup {
        group: "g".into(),
        generation: 1,
        last_acked: Seq(0),
        epoch: 0,
        disks: disks.clone(),
    };
    Message::Hello(Hello {
        agent: "a".into(),
        software: None,
        dedup_window: 0,
        framed_records: false,
        groups: (0..groups).map(g).collect(),
    })
    .encode_payload()
}

#[test]
fn hello_checks_disk_sizes_and_duplicates() {
    let d = |n: &str, s| DiskInfo {
        disk: n.into(),
        size_bytes: s,
    };
    assert!(Message::decode(FrameKind::Hello, &hello_with(vec![d("a", 512)], 1)).is_ok());
    for bad in [
        hello_with(vec![d("a", 0)], 1),
        hello_with(vec![d("a", 513)], 1),
        hello_with(vec![d("a", 512), d("a", 1024)], 1),
        hello_with(vec![d("a", 512)], 2),
    ] {
        assert!(matches!(
            Message::decode(FrameKind::Hello, &bad),
            Err(DecodeError::Invalid { .. })
        ));
    }
}

#[test]
fn hello_count_cannot_force_a_big_allocation() {
    // agent "a", (version 2: an empty software version, version 3: no dedup window, version
    // 5: no flags,) then 65535 groups announced but no bytes for them.
    let p = [1, b'a', 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    assert!(matches!(
        Message::decode(FrameKind::Hello, &p),
        Err(DecodeError::TooLarge { .. })
    ));
    let p1 = [1, b'a', 0xff, 0xff];
    assert!(matches!(
        Message::decode_version(1, FrameKind::Hello, &p1),
        Err(DecodeError::TooLarge { .. })
    ));
}

fn batch(f: impl Fn(&mut Batch)) -> Result<Message, DecodeError> {
    let mut b = Batch {
        group: "g".into(),
        generation: 1,
        first_seq: Seq(1),
        record_count: 1,
        timestamp_ms: 0,
        uncompressed_len: 16,
        compressed: vec![0; 4],
    };
    f(&mut b);
    Message::decode(FrameKind::Batch, &Message::Batch(b).encode_payload())
}

#[test]
fn batch_header_fields_are_checked() {
    assert!(batch(|_| {}).is_ok());
    assert!(batch(|b| b.first_seq = Seq(0)).is_err());
    assert!(batch(|b| b.record_count = 0).is_err());
    assert!(batch(|b| b.record_count = MAX_BATCH_RECORDS + 1).is_err());
    assert!(batch(|b| {
        b.first_seq = Seq(u64::MAX);
        b.uncompressed_len = 32;
        b.record_count = 2;
    })
    .is_err());
    assert!(batch(|b| b.first_seq = Seq(u64::MAX)).is_ok());
    assert!(batch(|b| b.uncompressed_len = MAX_BATCH_UNCOMPRESSED + 1).is_err());
    assert!(batch(|b| b.uncompressed_len = 15).is_err());
}

fn hashes(f: impl Fn(&mut Hashes)) -> Result<Message, DecodeError> {
    let mut h = Hashes {
        group: "g".into(),
        disk: 0,
        offset: 0,
        block_size: 4096,
        hashes: vec![1, 2],
    };
    f(&mut h);
    Message::decode(FrameKind::Hashes, &Message::Hashes(h).encode_payload())
}

#[test]
fn hashes_fields_are_checked() {
    assert!(hashes(|_| {}).is_ok());
    assert!(hashes(|h| h.offset = 100).is_err());
    assert!(hashes(|h| h.block_size = 0).is_err());
    assert!(hashes(|h| h.block_size = 1000).is_err());
    assert!(hashes(|h| h.offset = u64::MAX - 511).is_err());
    assert!(hashes(|h| {
        h.offset = u64::MAX - 511;
        h.hashes.clear()
    })
    .is_ok());
}

#[test]
fn unknown_enum_values_are_invalid() {
    let mut p = Message::Control(Control {
        group: "g".into(),
        op: ControlOp::Drain,
        arg: String::new(),
    })
    .encode_payload();
    p[2] = 11; // (1..=10 are ops)
    assert!(matches!(
        Message::decode(FrameKind::Control, &p),
        Err(DecodeError::Invalid { .. })
    ));
    let mut p = Message::Welcome(Welcome {
        dedup_window: 0,
        framed_records: false,
        groups: vec![WelcomeGroup {
            group: "g".into(),
            generation: 0,
            status: ResumeStatus::Resume,
            durable: Seq(0),
        }],
    })
    .encode_payload();
    p[12] = 2;
    assert!(matches!(
        Message::decode(FrameKind::Welcome, &p),
        Err(DecodeError::Invalid { .. })
    ));
}

/// Every text field: any string, however long and whatever its characters, encodes without a
/// panic, decodes, and comes back as its longest prefix that fits (cut on a char boundary).
mod text_fields {
    use super::*;
    use proptest::prelude::*;

    fn texts(s: &str) -> Vec<Message> {
        vec![
            Message::Error(ErrorMsg {
                code: ErrorCode::StaleGeneration,
                message: s.into(),
            }),
            Message::Control(Control {
                group: "g".into(),
                op: ControlOp::Drain,
                arg: s.into(),
            }),
        ]
    }

    fn text_of(m: &Message) -> &str {
        match m {
            Message::Error(e) => &e.message,
            Message::Control(c) => &c.arg,
            _ => unreachable!(),
        }
    }

    fn check(s: &str) {
        for m in texts(s) {
            let frame = m.to_frame();
            let (head, payload, _) = decode_frame(&frame).unwrap().unwrap();
            let back = Message::decode(head.kind, payload).unwrap();
            let got = text_of(&back);
            assert!(got.len() <= MAX_MESSAGE_LEN);
            assert!(s.starts_with(got));
            if s.len() <= MAX_MESSAGE_LEN {
                assert_eq!(got, s);
            } else {
                // The longest prefix: one more char would not fit.
                let next = s[got.len()..].chars().next().unwrap();
                assert!(got.len() + next.len_utf8() > MAX_MESSAGE_LEN);
            }
        }
    }

    #[test]
    fn an_over_long_fence_reason_is_cut_not_a_panic() {
        check(&"x".repeat(5000));
        // A multi-byte char straddling the limit is dropped whole.
        check(&format!(
            "{}é{}",
            "a".repeat(MAX_MESSAGE_LEN - 1),
            "b".repeat(10)
        ));
        check(&"€".repeat(3000));
        check("");
    }

    proptest! {
        #[test]
        fn any_text_encodes(s in any::<String>(), pad in 0usize..6000, c in any::<char>()) {
            let mut t: String = std::iter::repeat_n(c, pad / c.len_utf8().max(1)).collect();
            t.push_str(&s);
            check(&t);
        }
    }
}
