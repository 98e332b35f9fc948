//! Property tests: every layout round-trips through its encoder and decoder.

mod strategies;

use proptest::prelude::*;
use rewind_formats::*;
use strategies::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn message_round_trips_through_a_frame(m in message()) {
        let frame = m.to_frame();
        let (head, payload, used) = decode_frame(&frame).unwrap().unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(head.kind, m.kind());
        prop_assert_eq!(payload, &m.encode_payload()[..]);
        prop_assert_eq!(Message::decode_version(head.version, head.kind, payload), Ok(m));
    }

    #[test]
    fn frames_decode_back_to_back_from_any_split(ms in proptest::collection::vec(message(), 1..4), cut in any::<prop::sample::Index>()) {
        let stream: Vec<u8> = ms.iter().flat_map(|m| m.to_frame()).collect();
        // A receiver that got only a prefix waits for more; then decodes all of it.
        let cut = cut.index(stream.len());
        let mut got = Vec::new();
        let mut buf = &stream[..cut];
        while let Some((head, payload, used)) = decode_frame(buf).unwrap() {
            got.push(Message::decode(head.kind, payload).unwrap());
            buf = &buf[used..];
        }
        let consumed = cut - buf.len();
        let mut rest = &stream[consumed..];
        while let Some((head, payload, used)) = decode_frame(rest).unwrap() {
            got.push(Message::decode(head.kind, payload).unwrap());
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(got, ms);
    }

    #[test]
    fn batch_records_round_trip((b, recs) in batch()) {
        let m = Message::Batch(b.clone());
        let back = match Message::decode(FrameKind::Batch, &m.encode_payload()) {
            Ok(Message::Batch(back)) => back,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(&back, &b);
        let decoded = back.decode_records().unwrap();
        prop_assert_eq!(decoded.len(), recs.len());
        prop_assert_eq!(decoded.iter().collect::<Vec<_>>(), refs(&recs));
        prop_assert_eq!(back.last_seq().0, b.first_seq.0 + recs.len() as u64 - 1);
    }

    #[test]
    fn raw_records_round_trip(recs in records()) {
        let raw = encode_records(&refs(&recs));
        let d = parse_records(raw.clone(), recs.len() as u32).unwrap();
        prop_assert_eq!(d.iter().collect::<Vec<_>>(), refs(&recs));
        prop_assert_eq!(d.raw(), &raw[..]);
    }

    #[test]
    fn records_chunk_round_trips(recs in records(), first in 1..u64::MAX / 2, ts in any::<u64>(), generation in any::<u64>(), junk in any::<u8>()) {
        let r = refs(&recs);
        let mut out = vec![junk; records_chunk_len(&r)];
        let h = write_records_chunk(&mut out, Seq(first), ts, generation, &r);
        prop_assert_eq!(out.len() % BLOCK, 0);
        prop_assert_eq!(h.total_len, out.len() as u64);
        let p = peek_chunk(&out).unwrap();
        prop_assert_eq!((p.kind, p.first_seq, p.last_seq, p.total_len), (ChunkKind::Records, h.first_seq, h.last_seq, h.total_len));
        prop_assert_eq!(decode_chunk_header(&out[..p.header_len as usize]), Ok(h.clone()));
        for (rec, want) in h.records.iter().zip(&r) {
            prop_assert_eq!((rec.disk, rec.kind, rec.offset, rec.len), (want.disk, want.kind, want.offset, want.len));
            let at = rec.data_pos as usize;
            if rec.kind == RecordKind::Data {
                prop_assert_eq!(at % BLOCK, 0);
                prop_assert_eq!(&out[at..at + rec.len as usize], want.data);
                prop_assert_eq!(verify_record_data(rec, &out[at..]), Ok(()));
            }
        }
    }

    #[test]
    fn tag_chunk_round_trips(tag in tag_info(), ts in any::<u64>(), generation in any::<u64>()) {
        let mut out = vec![0xff; tag_chunk_len(&tag)];
        let h = write_tag_chunk(&mut out, ts, generation, &tag);
        prop_assert_eq!(out.len(), BLOCK);
        prop_assert_eq!(decode_chunk_header(&out), Ok(h.clone()));
        prop_assert_eq!(h.tag, Some(tag));
    }

    #[test]
    fn segment_header_round_trips(h in segment_header()) {
        let b = h.encode();
        prop_assert_eq!(SegmentHeader::decode(&b), Ok(h));
    }

    #[test]
    fn footer_round_trips((f, at) in footer()) {
        let bytes = f.encode(at);
        prop_assert_eq!(bytes.len() % BLOCK, 0);
        let file_len = at + bytes.len() as u64;
        let t = SegmentFooter::decode_trailer(&bytes[bytes.len() - TRAILER_LEN..], file_len).unwrap();
        prop_assert_eq!(t.footer_offset, at);
        let body = &bytes[..t.body_len as usize];
        prop_assert_eq!(SegmentFooter::decode_body(body, &t), Ok(f));
    }

    #[test]
    fn error_codes_round_trip(v in any::<u16>()) {
        prop_assert_eq!(ErrorCode::from_u16(v).as_u16(), v);
    }
}
