use super::*;
use crate::tag::TagKind;

fn recs(data: &[u8]) -> Vec<RecordRef<'_>> {
    vec![
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 8192,
            len: data.len() as u32,
            data,
        },
        RecordRef {
            disk: 1,
            kind: RecordKind::Trim,
            offset: 0,
            len: 4096,
            data: &[],
        },
        RecordRef {
            disk: 1,
            kind: RecordKind::Data,
            offset: 512,
            len: 512,
            data: &data[..512],
        },
    ]
}

fn build(data: &[u8]) -> (Vec<u8>, ChunkHeader) {
    let r = recs(data);
    let mut out = vec![0xee; records_chunk_len(&r)];
    let h = write_records_chunk(&mut out, Seq(50), 9, 4, &r);
    (out, h)
}

#[test]
fn records_chunk_round_trips_and_is_laid_out_in_blocks() {
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect::<Vec<_>>()[..4608].to_vec();
    let (out, h) = build(&data);
    // header block + 2 blocks for 4608 bytes + 1 block for 512 bytes.
    assert_eq!(out.len(), 4 * BLOCK);
    assert_eq!(&out[0..4], b"RWJC");
    assert_eq!(h.header_len_padded, BLOCK as u64);
    assert_eq!(h.first_seq, Seq(50));
    assert_eq!(h.last_seq, Seq(52));
    assert_eq!(h.records[0].data_pos, BLOCK as u64);
    assert_eq!(h.records[1].data_pos, 0);
    assert_eq!(h.records[2].data_pos, 3 * BLOCK as u64);
    assert_eq!(decode_chunk_header(&out), Ok(h.clone()));
    // Only header_len bytes are needed.
    let p = peek_chunk(&out).unwrap();
    assert_eq!(p.header_len as usize, 64 + 3 * 32);
    assert_eq!(p.total_len, out.len() as u64);
    assert_eq!(
        decode_chunk_header(&out[..p.header_len as usize]),
        Ok(h.clone())
    );
    // Padding was zeroed even though the buffer started as 0xee.
    assert!(out[p.header_len as usize..BLOCK].iter().all(|&b| b == 0));
    assert!(out[BLOCK + 4608..3 * BLOCK].iter().all(|&b| b == 0));
    assert!(out[3 * BLOCK + 512..].iter().all(|&b| b == 0));
    for rec in &h.records {
        let at = rec.data_pos as usize;
        assert_eq!(verify_record_data(rec, &out[at..]), Ok(()));
    }
    assert_eq!(&out[BLOCK..BLOCK + 4608], &data[..]);
}

#[test]
fn data_damage_is_found_by_the_record_crc() {
    let (mut out, h) = build(&[7; 1024]);
    out[BLOCK + 3] ^= 1;
    assert_eq!(
        verify_record_data(&h.records[0], &out[BLOCK..]),
        Err(DecodeError::PayloadChecksum)
    );
    assert!(matches!(
        verify_record_data(&h.records[0], &out[BLOCK..BLOCK + 10]),
        Err(DecodeError::Truncated { .. })
    ));
    assert_eq!(verify_record_data(&h.records[1], &[]), Ok(()));
}

#[test]
fn every_header_byte_is_covered() {
    let (out, _) = build(&[7; 1024]);
    let header_len = peek_chunk(&out).unwrap().header_len as usize;
    for i in 0..header_len {
        for bit in [0x01, 0x80] {
            let mut b = out.clone();
            b[i] ^= bit;
            assert!(decode_chunk_header(&b).is_err(), "byte {i} bit {bit:#x}");
        }
    }
}

#[test]
fn torn_header_is_truncated_not_a_panic() {
    let (out, _) = build(&[7; 1024]);
    let header_len = 64 + 3 * 32;
    for cut in 0..header_len {
        assert!(decode_chunk_header(&out[..cut]).is_err());
    }
    assert!(decode_chunk_header(&out[..header_len]).is_ok());
}

fn refix(b: &mut [u8]) {
    let header_len = le_u32(b, 8) as usize;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..60]), &b[64..header_len]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn inconsistent_entries_are_invalid_even_with_a_good_crc() {
    let (good, _) = build(&[7; 1024]);
    type Patch = Box<dyn Fn(&mut [u8])>;
    let cases: Vec<(&str, Patch)> = vec![
        ("seq gap", Box::new(|b| b[64 + 32] = 99)),
        ("reserved", Box::new(|b| b[64 + 11] = 1)),
        ("unknown kind", Box::new(|b| b[64 + 10] = 7)),
        ("len not sector multiple", Box::new(|b| b[64 + 12] = 1)),
        ("trim with data pos", Box::new(|b| b[64 + 32 + 28] = 1)),
        ("data inside header", Box::new(|b| b[64 + 28] = 0)),
        ("data past total_len", Box::new(|b| b[64 + 28] = 9)),
        ("overlapping data", Box::new(|b| b[64 + 64 + 28] = 1)),
        ("prefix reserved", Box::new(|b| b[56] = 1)),
        ("total_len unaligned", Box::new(|b| b[48] = 1)),
        ("entry_count disagrees", Box::new(|b| b[12] = 2)),
        ("last_seq disagrees", Box::new(|b| b[24] = 60)),
        (
            "first_seq zero",
            Box::new(|b| {
                b[16..24].fill(0);
                b[24..32].copy_from_slice(&2u64.to_le_bytes());
            }),
        ),
    ];
    for (what, f) in cases {
        let mut b = good.clone();
        f(&mut b);
        refix(&mut b);
        assert!(
            matches!(decode_chunk_header(&b), Err(DecodeError::Invalid { .. })),
            "{what}: {:?}",
            decode_chunk_header(&b)
        );
    }
}

#[test]
fn prefix_damage_kinds() {
    let (good, _) = build(&[7; 512]);
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(peek_chunk(&b), Err(DecodeError::BadMagic { .. })));
    let mut b = good.clone();
    b[4] = 3;
    assert_eq!(peek_chunk(&b), Err(DecodeError::UnsupportedVersion(3)));
    let mut b = good.clone();
    b[6] = 3;
    assert_eq!(peek_chunk(&b), Err(DecodeError::UnknownKind(3)));
    let mut b = good.clone();
    b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(peek_chunk(&b), Err(DecodeError::TooLarge { .. })));
    let mut b = good.clone();
    b[48..56].copy_from_slice(&(MAX_CHUNK_LEN + BLOCK as u64).to_le_bytes());
    assert!(matches!(peek_chunk(&b), Err(DecodeError::TooLarge { .. })));
    let mut b = good;
    b[40] ^= 1;
    assert_eq!(decode_chunk_header(&b), Err(DecodeError::HeaderChecksum));
}

#[test]
fn tag_chunk_round_trips() {
    let tag = TagInfo {
        seq: Seq(77),
        kind: TagKind::Failover,
        timestamp_ms: 1234,
        name: "planned-failover-1".into(),
    };
    assert_eq!(tag_chunk_len(&tag), BLOCK);
    let mut out = vec![0xaa; BLOCK];
    let h = write_tag_chunk(&mut out, 99, 5, &tag);
    assert_eq!(h.first_seq, Seq(77));
    assert_eq!(h.last_seq, Seq(77));
    assert_eq!(h.tag.as_ref(), Some(&tag));
    assert_eq!(decode_chunk_header(&out), Ok(h));
    let long = TagInfo {
        name: "n".repeat(255),
        ..tag
    };
    assert_eq!(tag_chunk_len(&long), BLOCK);
    let mut out = vec![0; BLOCK];
    let h = write_tag_chunk(&mut out, 99, 5, &long);
    assert_eq!(decode_chunk_header(&out), Ok(h));
}

#[test]
fn extents_and_summaries() {
    let (_, h) = build(&[7; 512]);
    let s = h.summary(BLOCK as u64 * 3);
    assert_eq!(s.pos, BLOCK as u64 * 3);
    assert_eq!(
        (s.first_seq, s.last_seq, s.kind),
        (Seq(50), Seq(52), ChunkKind::Records)
    );
    let e = h.records[0].extent(BLOCK as u64 * 3);
    assert_eq!(e.data_pos, BLOCK as u64 * 4);
    assert_eq!(e.seq, Seq(50));
    assert_eq!(h.records[1].extent(BLOCK as u64 * 3).data_pos, 0);
}

#[test]
#[should_panic(expected = "records_chunk_len")]
fn wrong_buffer_length_panics() {
    let r = recs(&[0; 512]);
    let mut out = vec![0; records_chunk_len(&r) - 1];
    write_records_chunk(&mut out, Seq(1), 0, 0, &r);
}

/// A chunk of two data records (the first encoded, compressible), a trim, and a raw one.
fn build_encoded(z: &[u8], raw: &[u8]) -> (Vec<u8>, ChunkHeader, Vec<u8>) {
    let r = vec![
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 0,
            len: z.len() as u32,
            data: z,
        },
        RecordRef {
            disk: 0,
            kind: RecordKind::Trim,
            offset: 1 << 20,
            len: 4096,
            data: &[],
        },
        RecordRef {
            disk: 0,
            kind: RecordKind::Data,
            offset: 4096,
            len: raw.len() as u32,
            data: raw,
        },
    ];
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    let mut enc = Vec::new();
    assert!(super::super::encoding::encode_record(&mut c, z, &mut enc));
    let encoded = [Some(&enc[..]), None, None];
    let mut out = vec![0xee; records_chunk_len_with(&r, &encoded)];
    let h = write_records_chunk_with(&mut out, Seq(7), 1, 1, &r, &encoded);
    (out, h, enc)
}

fn compressible(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i / 100) % 3) as u8).collect()
}

#[test]
fn encoded_chunk_round_trips_as_version_2() {
    let z = compressible(100 * 1024);
    let raw: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let (out, h, enc) = build_encoded(&z, &raw);
    assert_eq!(u16::from_le_bytes([out[4], out[5]]), CHUNK_VERSION_ENCODED);
    assert_eq!(out[CHUNK_PREFIX_LEN + 11], Encoding::Zstd.as_u8());
    // Header, the encoded record padded, the raw one: much less than 25 raw blocks.
    assert_eq!(out.len(), BLOCK + enc.len().div_ceil(BLOCK) * BLOCK + BLOCK);
    assert_eq!(decode_chunk_header(&out), Ok(h.clone()));
    assert_eq!(h.records[0].encoding, Encoding::Zstd);
    assert_eq!(h.records[2].encoding, Encoding::Raw);
    assert_eq!(h.records[0].extent(BLOCK as u64).encoding, Encoding::Zstd);
    verify_chunk_data(&h, &out).unwrap();
    let r = &h.records[0];
    verify_record_data(r, &out[r.data_pos as usize..]).unwrap();
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    let mut plain = vec![0; z.len()];
    super::super::encoding::decode_record(
        &mut d,
        r.len,
        r.data_crc,
        &out[r.data_pos as usize..],
        &mut plain,
    )
    .unwrap();
    assert_eq!(plain, z);
}

#[test]
fn damaged_encoded_records_are_refused() {
    let z = compressible(64 * 1024);
    let (out, h, enc) = build_encoded(&z, &[9u8; 512]);
    let at = h.records[0].data_pos as usize;

    // A frame byte: the record's crc.
    let mut bad = out.clone();
    bad[at + enc.len() - 1] ^= 0x40;
    assert_eq!(
        verify_chunk_data(&h, &bad),
        Err(DecodeError::PayloadChecksum)
    );
    // The table: a length out of bounds is named.
    let mut bad = out.clone();
    bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = verify_chunk_data(&h, &bad).unwrap_err().to_string();
    assert!(
        e.contains("frame table") && e.contains("frame 0 of 2"),
        "{e}"
    );
    // The region longer than its table says (the table claims one byte less).
    let mut bad = out.clone();
    let l0 = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
    bad[at..at + 4].copy_from_slice(&(l0 - 1).to_le_bytes());
    assert!(verify_chunk_data(&h, &bad).is_err());
    // An encoding byte a version 1 chunk may not carry, or no reader knows.
    let mut v1 = out.clone();
    v1[4..6].copy_from_slice(&CHUNK_VERSION.to_le_bytes());
    resign(&mut v1, h.records.len());
    let e = decode_chunk_header(&v1).unwrap_err().to_string();
    assert!(e.contains("reserved byte is 1 in a version 1 chunk"), "{e}");
    let mut unknown = out.clone();
    unknown[CHUNK_PREFIX_LEN + 11] = 9;
    resign(&mut unknown, h.records.len());
    let e = decode_chunk_header(&unknown).unwrap_err().to_string();
    assert!(e.contains("unknown encoding 9"), "{e}");
    // A trim record with an encoding.
    let mut trim = out.clone();
    trim[CHUNK_PREFIX_LEN + CHUNK_RECORD_ENTRY_LEN + 11] = 1;
    resign(&mut trim, h.records.len());
    assert!(decode_chunk_header(&trim).is_err());
    // A version no reader knows.
    let mut v3 = out.clone();
    v3[4..6].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(peek_chunk(&v3), Err(DecodeError::UnsupportedVersion(3)));
}

#[test]
fn raw_only_chunks_stay_version_1() {
    let data = vec![5u8; 4096];
    let (out, h) = build(&data);
    assert_eq!(u16::from_le_bytes([out[4], out[5]]), CHUNK_VERSION);
    assert!(h.records.iter().all(|r| r.encoding == Encoding::Raw));
    verify_chunk_data(&h, &out).unwrap();
}

/// Recomputes the header crc after a test edited the prefix or entries.
fn resign(out: &mut [u8], n: usize) {
    let header_len = CHUNK_PREFIX_LEN + CHUNK_RECORD_ENTRY_LEN * n;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&out[..CRC_OFF]),
        &out[CHUNK_PREFIX_LEN..header_len],
    );
    out[CRC_OFF..CHUNK_PREFIX_LEN].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_given_crc_is_written_as_the_encoded_records_crc() {
    let z = compressible(100 * 1024);
    let raw: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let (want, h, enc) = build_encoded(&z, &raw);
    let mut r: Vec<RecordRef<'_>> = Vec::new();
    for (e, data) in h.records.iter().zip([&z[..], &[], &raw[..]]) {
        r.push(RecordRef {
            disk: e.disk,
            kind: e.kind,
            offset: e.offset,
            len: e.len,
            data,
        });
    }
    let encoded = [Some(&enc[..]), None, None];
    let crcs = [Some(crc32c::crc32c(&enc)), None, None];
    let mut out = vec![0xee; want.len()];
    let got = write_records_chunk_with_crcs(&mut out, Seq(7), 1, 1, &r, &encoded, &crcs);
    assert_eq!((got, out), (h, want), "the same chunk as computing the crc");
}

#[test]
#[should_panic(expected = "has a crc given but is not encoded")]
fn a_crc_for_a_raw_record_panics() {
    let r = recs(&[0; 512]);
    let mut out = vec![0; records_chunk_len(&r)];
    let crcs: Vec<Option<u32>> = (0..r.len()).map(|i| (i == 0).then_some(1)).collect();
    write_records_chunk_with_crcs(&mut out, Seq(1), 0, 0, &r, &[], &crcs);
}
