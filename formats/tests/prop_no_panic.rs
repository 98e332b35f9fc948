//! Property tests: decoders never panic, on arbitrary bytes or on damaged valid encodings.

mod strategies;

use proptest::collection::vec;
use proptest::prelude::*;
use rewind_formats::*;
use strategies::*;

/// Flips bytes of `b` at the given (index, xor) pairs.
fn damage(mut b: Vec<u8>, flips: &[(prop::sample::Index, u8)]) -> Vec<u8> {
    if !b.is_empty() {
        for (i, x) in flips {
            let i = i.index(b.len());
            b[i] ^= x.max(&1);
        }
    }
    b
}

fn flips() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn frame_and_message_decoders_never_panic(data in vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&data);
        if let Some(h) = data.first_chunk::<FRAME_HEADER_LEN>() {
            let _ = FrameHeader::decode(h);
        }
        for kind in FrameKind::ALL {
            let _ = Message::decode(kind, &data);
        }
        fuzzing::frame(&data);
    }

    #[test]
    fn record_decoders_never_panic(data in vec(any::<u8>(), 0..1024), count in any::<u32>()) {
        let _ = parse_records(data.clone(), count);
        let _ = parse_records(data.clone(), count % 8);
        // A window holding a few blocks, so that references can resolve.
        let mut w = dedup::DedupWindow::receiver(4);
        let _ = encode_records_dedup(&[RecordRef { disk: 0, kind: RecordKind::Data, offset: 0, len: 8192, data: &[3u8; 8192] }], &mut w);
        let _ = parse_records_dedup(&data, count, &mut w);
        let _ = parse_records_dedup(&data, count % 8, &mut w);
        fuzzing::batch(&data);
    }

    #[test]
    fn chunk_and_footer_decoders_never_panic(data in vec(any::<u8>(), 0..1024), file_len in any::<u64>(), off in any::<u64>()) {
        let _ = peek_chunk(&data);
        let _ = decode_chunk_header(&data);
        let _ = SegmentHeader::decode(&data);
        let _ = SegmentFooter::decode_trailer(&data, file_len);
        let t = Trailer { footer_offset: off, body_len: data.len() as u64, body_crc: crc32c::crc32c(&data) };
        let _ = SegmentFooter::decode_body(&data, &t);
        fuzzing::segment(&data);
    }

    #[test]
    fn damaged_frames_are_errors_or_valid_messages(m in message(), f in flips()) {
        let frame = damage(m.to_frame(), &f);
        if let Ok(Some((head, payload, _))) = decode_frame(&frame) {
            // Damage that the crcs miss (vanishingly rare) must still decode safely.
            let _ = Message::decode_version(head.version, head.kind, payload);
        }
        let payload = damage(m.encode_payload(), &f);
        let _ = Message::decode(m.kind(), &payload);
        fuzzing::frame(&frame);
    }

    #[test]
    fn damaged_batches_never_panic((b, _) in batch(), f in flips()) {
        let mut b = b;
        b.compressed = damage(b.compressed, &f);
        let _ = b.decode_records();
        let payload = damage(Message::Batch(b).encode_payload(), &f);
        fuzzing::batch(&payload);
    }

    #[test]
    fn damaged_chunks_never_panic(recs in records(), f in flips()) {
        let r = refs(&recs);
        let mut out = vec![0; records_chunk_len(&r)];
        write_records_chunk(&mut out, Seq(1), 0, 0, &r);
        let out = damage(out, &f);
        let _ = decode_chunk_header(&out);
        fuzzing::segment(&out);
    }

    #[test]
    fn damaged_footers_never_panic((footer, at) in footer(), f in flips()) {
        let bytes = damage(footer.encode(at), &f);
        let file_len = at + bytes.len() as u64;
        if let Ok(t) = SegmentFooter::decode_trailer(&bytes[bytes.len() - TRAILER_LEN..], file_len) {
            let start = (t.footer_offset.saturating_sub(at)) as usize;
            if let Some(body) = bytes.get(start..start.saturating_add(t.body_len as usize)) {
                let _ = SegmentFooter::decode_body(body, &t);
            }
        }
    }

    #[test]
    fn damaged_segment_headers_never_panic(h in segment_header(), f in flips()) {
        let b = damage(h.encode().to_vec(), &f);
        prop_assert!(SegmentHeader::decode(&b).is_err() || b == h.encode().to_vec());
    }
}
