use super::*;
use crate::segment::encoding::{decode_record, encode_record, FRAME_SPAN, MAX_FRAME_LEN};
use crate::BLOCK;

fn compressible(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| ((i / 64) % 7) as u8 ^ salt).collect()
}

/// Table ++ frames of `data` as an agent makes them (checksummed frames), and their crc.
fn encoded(data: &[u8]) -> (Vec<u8>, u32) {
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.include_checksum(true).unwrap();
    let mut out = Vec::new();
    assert!(encode_record(&mut c, data, &mut out));
    let crc = crc32c::crc32c(&out);
    (out, crc)
}

fn data_rec(offset: u64, data: &[u8]) -> RecordRef<'_> {
    RecordRef {
        disk: 0,
        kind: RecordKind::Data,
        offset,
        len: data.len() as u32,
        data,
    }
}

fn batch(payload: &[u8], count: u32) -> Batch {
    Batch::from_payload("g", 1, Seq(10), 0, count as usize, payload, 1)
}

#[test]
fn framed_plain_and_zero_records_round_trip() {
    let a = compressible(3 * FRAME_SPAN + 4096, 1);
    let b = crate::testing::random_bytes(8192, 5);
    let (enc, crc) = encoded(&a);
    let framed = FramedRecord {
        record: RecordRef {
            data: &[],
            ..data_rec(0, &a)
        },
        encoded: Some((&enc, crc)),
    };
    let recs = [
        framed,
        FramedRecord {
            record: data_rec(1 << 20, &b),
            encoded: None,
        },
        FramedRecord {
            record: RecordRef {
                disk: 0,
                kind: RecordKind::Zero,
                offset: 4096,
                len: 4096,
                data: &[],
            },
            encoded: None,
        },
    ];
    let payload = encode_records_framed(&recs);
    assert_eq!(payload.len(), framed_payload_len(&recs));
    let got = batch(&payload, 3).decode_framed().unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got.iter().collect::<Vec<_>>(), recs);
    // What travels is what the journal stores: it decodes to the plain bytes.
    let (e, crc) = got.get(0).encoded.unwrap();
    let mut d = zstd::bulk::Decompressor::new().unwrap();
    let mut out = vec![0; a.len()];
    let mut region = e.to_vec();
    region.resize(e.len().div_ceil(BLOCK) * BLOCK, 0);
    decode_record(&mut d, a.len() as u32, crc, &region, &mut out).unwrap();
    assert_eq!(out, a);
    // A session without framed records refuses them, saying why.
    let e = batch(&payload, 3).decode_records().unwrap_err().to_string();
    assert!(e.contains("not granted framed records"), "{e}");
}

/// The error when record seq 10 carries `stored` (crc `crc`) for `len` plain bytes.
fn refusal(len: usize, stored: &[u8], crc: u32) -> String {
    let plain = vec![0u8; len];
    let rec = FramedRecord {
        record: RecordRef {
            data: &[],
            ..data_rec(0, &plain)
        },
        encoded: Some((stored, crc)),
    };
    let payload = encode_records_framed(&[rec]);
    batch(&payload, 1).decode_framed().unwrap_err().to_string()
}

#[test]
fn damaged_framed_records_are_refused_naming_seq_and_what() {
    let a = compressible(2 * FRAME_SPAN, 3);
    let (enc, crc) = encoded(&a);
    let n = a.len();

    // A flipped frame byte: the crc.
    let mut bad = enc.clone();
    *bad.last_mut().unwrap() ^= 1;
    let e = refusal(n, &bad, crc);
    assert!(e.contains("seq 10") && e.contains("crc32c"), "{e}");

    // Table and frames that do not add up (a byte more than the table says).
    let mut long = enc.clone();
    long.push(0);
    let e = refusal(n, &long, crc32c::crc32c(&long));
    assert!(e.contains("adds up to"), "{e}");

    // A frame length over the cap.
    let mut big = enc.clone();
    big[0..4].copy_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
    let e = refusal(n, &big, crc32c::crc32c(&big));
    assert!(e.contains("frame 0 of 2"), "{e}");

    // The frames of another length of record: content size is not the span.
    let (short, short_crc) = encoded(&compressible(2 * FRAME_SPAN - 4096, 3));
    let e = refusal(n, &short, short_crc);
    assert!(e.contains("frame 1 of 2 declares"), "{e}");

    // A frame without zstd's checksum.
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    let mut plain_frames = Vec::new();
    assert!(encode_record(&mut c, &a, &mut plain_frames));
    let e = refusal(n, &plain_frames, crc32c::crc32c(&plain_frames));
    assert!(e.contains("no content checksum"), "{e}");

    // Not zstd at all, lengths consistent.
    let mut junk = enc.clone();
    for b in &mut junk[8..12] {
        *b = 0x55;
    }
    let e = refusal(n, &junk, crc32c::crc32c(&junk));
    assert!(e.contains("frame 0 of 2 is not a zstd frame"), "{e}");

    // A stored_len past the end of the batch.
    let plain = vec![0u8; n];
    let mut payload = encode_records_framed(&[FramedRecord {
        record: RecordRef {
            data: &[],
            ..data_rec(0, &plain)
        },
        encoded: Some((&enc, crc)),
    }]);
    payload[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = batch(&payload, 1).decode_framed().unwrap_err().to_string();
    assert!(e.contains("past the batch's end"), "{e}");

    // A framed zero record.
    let mut payload = encode_records_framed(&[FramedRecord {
        record: RecordRef {
            disk: 0,
            kind: RecordKind::Zero,
            offset: 0,
            len: 4096,
            data: &[],
        },
        encoded: None,
    }]);
    payload[3] = ENCODING_FRAMED;
    let e = batch(&payload, 1).decode_framed().unwrap_err().to_string();
    assert!(e.contains("Zero record with encoding byte 2"), "{e}");
}
