use super::*;
use crate::tag::TagKind;

fn sample() -> SegmentFooter {
    let mut f = SegmentFooter {
        chunks: vec![
            ChunkSummary {
                pos: 4096,
                first_seq: Seq(10),
                last_seq: Seq(11),
                timestamp_ms: 1,
                kind: ChunkKind::Records,
            },
            ChunkSummary {
                pos: 3 * 4096,
                first_seq: Seq(11),
                last_seq: Seq(11),
                timestamp_ms: 2,
                kind: ChunkKind::Tag,
            },
        ],
        tags: vec![TagInfo {
            seq: Seq(11),
            kind: TagKind::AppConsistent,
            timestamp_ms: 2,
            name: "fsfreeze".into(),
        }],
        extents: vec![
            FooterExtent {
                disk: 1,
                kind: RecordKind::Zero,
                offset: 0,
                len: 512,
                seq: Seq(11),
                data_pos: 0,
                encoding: Encoding::Raw,
            },
            FooterExtent {
                disk: 0,
                kind: RecordKind::Data,
                offset: 4096,
                len: 4096,
                seq: Seq(10),
                data_pos: 2 * 4096,
                encoding: Encoding::Raw,
            },
        ],
    };
    f.sort_extents();
    f
}

const FOOTER_AT: u64 = 4 * 4096;

fn sealed(f: &SegmentFooter) -> (Vec<u8>, u64) {
    let bytes = f.encode(FOOTER_AT);
    let file_len = FOOTER_AT + bytes.len() as u64;
    (bytes, file_len)
}

fn decode(bytes: &[u8], file_len: u64) -> Result<SegmentFooter, DecodeError> {
    let t = SegmentFooter::decode_trailer(&bytes[bytes.len() - TRAILER_LEN..], file_len)?;
    let start = (t.footer_offset - FOOTER_AT) as usize;
    let body = bytes
        .get(start..start + t.body_len as usize)
        .ok_or(DecodeError::Truncated { need: 0, have: 0 })?;
    SegmentFooter::decode_body(body, &t)
}

#[test]
fn round_trip_and_layout() {
    let f = sample();
    assert_eq!(f.extents[0].disk, 0, "sorted");
    let (bytes, file_len) = sealed(&f);
    assert_eq!(bytes.len() % BLOCK, 0);
    assert_eq!(&bytes[0..4], b"RWJF");
    assert_eq!(&bytes[bytes.len() - 64..bytes.len() - 56], b"RWJTRAIL");
    assert_eq!(decode(&bytes, file_len), Ok(f.clone()));
    // The whole last block may be passed as the trailer.
    let t = SegmentFooter::decode_trailer(&bytes[bytes.len() - BLOCK..], file_len).unwrap();
    assert_eq!(t.footer_offset, FOOTER_AT);
    assert_eq!(t.body_len as usize, f.encode_body().len());
    let empty = SegmentFooter::default();
    let (bytes, file_len) = sealed(&empty);
    assert_eq!(bytes.len(), BLOCK);
    assert_eq!(decode(&bytes, file_len), Ok(empty));
}

#[test]
fn body_that_fills_a_block_exactly_gets_another_block() {
    // A body of BLOCK - 64 + 1 bytes cannot share its block with the trailer.
    let mut f = SegmentFooter::default();
    let per = 32;
    let n = (BLOCK - 64 - 24) / per + 1;
    for i in 0..n as u64 {
        f.extents.push(FooterExtent {
            disk: 0,
            kind: RecordKind::Trim,
            offset: i * 512,
            len: 512,
            seq: Seq(i + 1),
            data_pos: 0,
            encoding: Encoding::Raw,
        });
    }
    let (bytes, file_len) = sealed(&f);
    assert_eq!(bytes.len(), 2 * BLOCK);
    assert_eq!(decode(&bytes, file_len), Ok(f));
}

#[test]
fn trailer_damage() {
    let (bytes, file_len) = sealed(&sample());
    let tail = &bytes[bytes.len() - 64..];
    let t = |f: &dyn Fn(&mut [u8]), len: u64| {
        let mut b = tail.to_vec();
        f(&mut b);
        SegmentFooter::decode_trailer(&b, len)
    };
    let refix = |b: &mut [u8]| {
        let crc = crc32c::crc32c(&b[..60]);
        b[60..].copy_from_slice(&crc.to_le_bytes());
    };
    assert!(t(&|_| {}, file_len).is_ok());
    assert!(matches!(
        SegmentFooter::decode_trailer(&tail[1..], file_len),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        t(&|b| b[0] = 0, file_len),
        Err(DecodeError::BadMagic { .. })
    ));
    assert_eq!(
        t(&|b| b[8] = 2, file_len),
        Err(DecodeError::UnsupportedVersion(2))
    );
    assert_eq!(
        t(&|b| b[20] ^= 1, file_len),
        Err(DecodeError::HeaderChecksum)
    );
    assert!(t(&|_| {}, file_len - 4096).is_err(), "file too short");
    assert!(t(&|_| {}, file_len + 1).is_err(), "file not in blocks");
    for (what, f) in [
        (
            "reserved",
            &(|b: &mut [u8]| b[40] = 1) as &dyn Fn(&mut [u8]),
        ),
        ("offset unaligned", &|b: &mut [u8]| b[16] = 1),
        ("offset zero", &|b: &mut [u8]| b[16..24].fill(0)),
        ("body_len huge", &|b: &mut [u8]| b[31] = 0x7f),
        ("body_len tiny", &|b: &mut [u8]| {
            b[24..32].copy_from_slice(&3u64.to_le_bytes())
        }),
        ("overflow", &|b: &mut [u8]| {
            b[16..24].copy_from_slice(&(u64::MAX - 4095).to_le_bytes())
        }),
    ] {
        let r = t(
            &|b: &mut [u8]| {
                f(b);
                refix(b)
            },
            file_len,
        );
        assert!(r.is_err(), "{what}");
        assert_ne!(r, Err(DecodeError::HeaderChecksum), "{what}");
    }
}

#[test]
fn body_damage() {
    let f = sample();
    let body = f.encode_body();
    let trailer_for = |b: &[u8]| Trailer {
        footer_offset: FOOTER_AT,
        body_len: b.len() as u64,
        body_crc: crc32c::crc32c(b),
    };
    let t = trailer_for(&body);
    assert_eq!(SegmentFooter::decode_body(&body, &t), Ok(f.clone()));
    let mut bad = body.clone();
    bad[20] ^= 1;
    assert_eq!(
        SegmentFooter::decode_body(&bad, &t),
        Err(DecodeError::PayloadChecksum)
    );
    assert!(matches!(
        SegmentFooter::decode_body(&body[1..], &t),
        Err(DecodeError::Truncated { .. })
    ));
    // Structural damage with a matching crc (a writer bug, not bit rot).
    let with = |g: &dyn Fn(&mut SegmentFooter)| {
        let mut f = sample();
        g(&mut f);
        let b = f.encode_body();
        SegmentFooter::decode_body(&b, &trailer_for(&b))
    };
    assert!(with(&|_| {}).is_ok());
    assert!(with(&|f| f.extents.reverse()).is_err(), "unsorted");
    assert!(with(&|f| f.chunks.reverse()).is_err(), "chunk order");
    assert!(with(&|f| f.chunks[0].pos = 100).is_err(), "unaligned chunk");
    assert!(
        with(&|f| f.chunks[1].pos = FOOTER_AT).is_err(),
        "chunk past footer"
    );
    assert!(with(&|f| f.chunks[0].first_seq = Seq(12)).is_err(), "seqs");
    assert!(
        with(&|f| f.extents[0].data_pos = FOOTER_AT).is_err(),
        "data past footer"
    );
    assert!(with(&|f| f.extents[0].data_pos = 0).is_err(), "data at 0");
    assert!(
        with(&|f| f.extents[1].data_pos = 4096).is_err(),
        "zero with data"
    );
    assert!(with(&|f| f.extents[1].len = 100).is_err(), "len");
    let mut b = body.clone();
    b.push(0);
    assert!(matches!(
        SegmentFooter::decode_body(&b, &trailer_for(&b)),
        Err(DecodeError::Invalid { .. })
    ));
    let mut b = body.clone();
    b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        SegmentFooter::decode_body(&b, &trailer_for(&b)),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn encoded_extents_make_a_version_2_footer() {
    let decode = |bytes: &[u8], file_len: u64| {
        let t = SegmentFooter::decode_trailer(&bytes[bytes.len() - TRAILER_LEN..], file_len)?;
        SegmentFooter::decode_body(&bytes[..t.body_len as usize], &t)
    };
    let mut f = sample();
    let (bytes, file_len) = sealed(&f);
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), FOOTER_VERSION);
    // Which extent is data after sorting: (disk 0, ...) first.
    let ix = f
        .extents
        .iter()
        .position(|e| e.kind == RecordKind::Data)
        .unwrap();
    f.extents[ix].encoding = Encoding::Zstd;
    let (bytes, file_len2) = sealed(&f);
    assert_eq!(file_len, file_len2);
    assert_eq!(
        u16::from_le_bytes([bytes[4], bytes[5]]),
        FOOTER_VERSION_ENCODED
    );
    assert_eq!(decode(&bytes, file_len).unwrap(), f);

    // The same bytes claiming version 1: the encoding byte is refused, not ignored.
    let mut v1 = f.encode_body();
    v1[4..6].copy_from_slice(&FOOTER_VERSION.to_le_bytes());
    let t = Trailer {
        footer_offset: FOOTER_AT,
        body_len: v1.len() as u64,
        body_crc: crc32c::crc32c(&v1),
    };
    let e = SegmentFooter::decode_body(&v1, &t).unwrap_err().to_string();
    assert!(
        e.contains("reserved byte is 1 in a version 1 footer"),
        "{e}"
    );
}
