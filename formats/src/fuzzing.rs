//! What the fuzz targets do with their bytes, shared with the corpus replay test.
//!
//! `formats/fuzz/fuzz_targets/*.rs` call these, and `tests/fuzz_corpus.rs` replays every corpus
//! and artifact file through them, so a crash found once stays a regression test for good.
//!
//! Each function feeds the bytes to the decoders twice: as they are, and with their checksums
//! recomputed. A random mutation almost never keeps a crc32c valid, so without the second pass
//! the fuzzer would spend its time on the checksum checks and never reach the field validation
//! behind them. Whatever decodes must encode back to the same value (or bytes), which is
//! asserted: a panic here is a bug in this crate.

use crate::bytes::le_u32;
use crate::frame::{decode_frame, FrameHeader, FrameKind, FRAME_HEADER_LEN};
use crate::message::{Batch, Message};
use crate::records::{encode_records, parse_records, RecordRef};
use crate::segment::{
    decode_chunk_header, peek_chunk, verify_record_data, SegmentFooter, SegmentHeader, Trailer,
    TRAILER_LEN,
};
use crate::{DecodeError, BLOCK};

/// Target `frame`: [`decode_frame`] and [`Message::decode`].
pub fn frame(data: &[u8]) {
    decode_stream(data);
    let mut fixed = data.to_vec();
    if fixed.len() >= FRAME_HEADER_LEN {
        // Make the header and payload checksums right, so the payload decoder gets exercised.
        let len = le_u32(&fixed, 8) as usize;
        let payload_end = fixed.len().min(FRAME_HEADER_LEN + len);
        let crc = crc32c::crc32c(&fixed[FRAME_HEADER_LEN..payload_end]);
        fixed[12..16].copy_from_slice(&crc.to_le_bytes());
        let crc = crc32c::crc32c(&fixed[..20]);
        fixed[20..24].copy_from_slice(&crc.to_le_bytes());
        decode_stream(&fixed);
    }
    // And every message decoder directly: the first byte picks the kind and the version, the
    // rest is the payload.
    if let Some((&k, payload)) = data.split_first() {
        let kind = FrameKind::ALL[usize::from(k) % FrameKind::ALL.len()];
        let versions = crate::FRAME_VERSION - crate::FRAME_VERSION_MIN + 1;
        let version = crate::FRAME_VERSION_MIN + u16::from(k >> 4) % versions;
        decode_message(version, kind, payload);
    }
}

/// Decodes frames back to back, as a receiver does, until an error or the end.
fn decode_stream(mut buf: &[u8]) {
    while let Ok(Some((head, payload, used))) = decode_frame(buf) {
        assert!(used >= FRAME_HEADER_LEN && used <= buf.len());
        if let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() {
            let h = FrameHeader::decode(header).expect("decode_frame accepted this header");
            assert_eq!(h.encode(), *header, "frame header re-encodes differently");
        }
        decode_message(head.version, head.kind, payload);
        buf = &buf[used..];
    }
}

fn decode_message(version: u16, kind: FrameKind, payload: &[u8]) {
    let Ok(m) = Message::decode_version(version, kind, payload) else {
        return;
    };
    assert_eq!(m.kind(), kind);
    assert_eq!(
        m.encode_payload_version(version),
        payload,
        "message re-encodes differently"
    );
    if let Message::Batch(b) = &m {
        check_batch(b);
    }
}

/// Target `batch`: [`parse_records`] on raw bytes, and [`Batch::decode_records`] on a decoded
/// BATCH payload.
pub fn batch(data: &[u8]) {
    // First 4 bytes: record count; the rest: an uncompressed record payload.
    if let Some((count, raw)) = data.split_first_chunk::<4>() {
        check_records(raw, u32::from_le_bytes(*count));
    }
    // The in-place decoder (what the daemon uses) must agree with the owned one, byte for byte.
    let in_place = crate::message::BatchRef::decode(data);
    match Message::decode(FrameKind::Batch, data) {
        Ok(Message::Batch(b)) => {
            let r = in_place.expect("BatchRef decodes whatever Message::decode does");
            assert_eq!(r.to_owned(), b);
            assert_eq!(r.decode_records().ok(), b.decode_records().ok());
            check_batch(&b);
        }
        _ => assert!(
            in_place.is_err(),
            "BatchRef accepted what Message::decode refused"
        ),
    }
    // The same bytes as the compressed stream of a plausible batch, to reach zstd itself.
    if let Some((head, compressed)) = data.split_first_chunk::<4>() {
        let b = Batch {
            group: "fuzz".into(),
            generation: 1,
            first_seq: crate::Seq(1),
            record_count: u32::from(head[0]).max(1),
            timestamp_ms: 0,
            uncompressed_len: u32::from(u16::from_le_bytes([head[1], head[2]])) * 16,
            compressed: compressed.to_vec(),
        };
        check_batch(&b);
    }
}

fn check_batch(b: &Batch) {
    if let Ok(recs) = b.decode_records() {
        assert_eq!(recs.len(), b.record_count as usize);
        assert_eq!(recs.raw().len(), b.uncompressed_len as usize);
        check_reencode(recs.iter().collect(), recs.raw());
    }
}

fn check_records(raw: &[u8], count: u32) {
    if let Ok(recs) = parse_records(raw.to_vec(), count) {
        assert_eq!(recs.len(), count as usize);
        check_reencode(recs.iter().collect(), raw);
    }
}

fn check_reencode(recs: Vec<RecordRef<'_>>, raw: &[u8]) {
    assert_eq!(encode_records(&recs), raw, "records re-encode differently");
}

/// Target `segment`: [`SegmentHeader::decode`], [`peek_chunk`], [`decode_chunk_header`],
/// [`SegmentFooter::decode_trailer`] and [`SegmentFooter::decode_body`].
pub fn segment(data: &[u8]) {
    segment_header(data);
    chunk(data);
    footer(data);
}

fn segment_header(data: &[u8]) {
    let check = |b: &[u8]| {
        if let Ok(h) = SegmentHeader::decode(b) {
            assert_eq!(
                &h.encode()[..],
                &b[..BLOCK],
                "segment header re-encodes differently"
            );
        }
    };
    check(data);
    // Inputs shorter than a block are zero padded, then the crc is fixed.
    let mut b = data.to_vec();
    if b.len() < BLOCK {
        b.resize(BLOCK, 0);
    }
    let crc = crc32c::crc32c(&b[..BLOCK - 4]);
    b[BLOCK - 4..BLOCK].copy_from_slice(&crc.to_le_bytes());
    check(&b);
}

fn chunk(data: &[u8]) {
    let check = |b: &[u8]| {
        let peeked = peek_chunk(b);
        let Ok(h) = decode_chunk_header(b) else {
            return;
        };
        let p = peeked.expect("decode_chunk_header accepted what peek_chunk refused");
        assert_eq!(
            (p.kind, p.first_seq, p.last_seq, p.total_len),
            (h.kind, h.first_seq, h.last_seq, h.total_len)
        );
        for rec in &h.records {
            let at = usize::try_from(rec.data_pos).unwrap_or(usize::MAX);
            let _ = verify_record_data(rec, b.get(at..).unwrap_or(&[]));
        }
    };
    check(data);
    if let Ok(p) = peek_chunk(data) {
        let header_len = p.header_len as usize;
        if data.len() >= header_len {
            let mut b = data.to_vec();
            let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..60]), &b[64..header_len]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
            check(&b);
        }
    }
}

fn footer(data: &[u8]) {
    // The input as a whole sealed footer region (body + padding + trailer) at a fixed offset.
    const AT: u64 = 16 * BLOCK as u64;
    let file_len = AT + data.len() as u64;
    if let Ok(t) = SegmentFooter::decode_trailer(data, file_len) {
        let start = t
            .footer_offset
            .checked_sub(AT)
            .and_then(|s| usize::try_from(s).ok());
        let end = start.and_then(|s| s.checked_add(usize::try_from(t.body_len).ok()?));
        if let (Some(s), Some(e)) = (start, end) {
            if let Some(body) = data.get(s..e) {
                check_body(body, &t);
            }
        }
    }
    // The input as a body, with a trailer that vouches for it (first 8 bytes: footer_offset).
    if let Some((off, body)) = data.split_first_chunk::<8>() {
        let t = Trailer {
            footer_offset: u64::from_le_bytes(*off),
            body_len: body.len() as u64,
            body_crc: crc32c::crc32c(body),
        };
        check_body(body, &t);
        // And a trailer built from it must decode back.
        if t.footer_offset.is_multiple_of(BLOCK as u64) && t.footer_offset >= BLOCK as u64 {
            let enc = t.encode();
            let fl = t
                .footer_offset
                .saturating_add(body.len() as u64 + TRAILER_LEN as u64);
            let fl = crate::round_up_block(fl).unwrap_or(u64::MAX);
            match SegmentFooter::decode_trailer(&enc, fl) {
                Ok(back) => assert_eq!(back, t),
                Err(DecodeError::Invalid { .. } | DecodeError::TooLarge { .. }) => {}
                Err(e) => panic!("trailer did not round trip: {e}"),
            }
        }
    }
}

fn check_body(body: &[u8], t: &Trailer) {
    if let Ok(f) = SegmentFooter::decode_body(body, t) {
        assert_eq!(f.encode_body(), body, "footer body re-encodes differently");
    }
}

/// Target `policy`: a policy as it arrives in a CONTROL `arg` (JSON), decoded and validated;
/// what is accepted must encode to a policy that decodes to the same value.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = crate::policy::Policy::from_control_arg(text) {
        let again = crate::policy::Policy::from_control_arg(&p.to_control_arg());
        assert_eq!(
            again.as_ref(),
            Ok(&p),
            "a policy must survive its own encoding"
        );
    }
}

/// Target `agent_report`: an agent's report as it arrives in a CONTROL `arg` (JSON), read
/// leniently and checked; what is accepted must survive its own encoding.
pub fn agent_report(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = crate::agent_report::AgentReport::parse(text) {
        let again = crate::agent_report::AgentReport::parse(&r.to_arg());
        assert_eq!(
            again.as_ref(),
            Ok(&r),
            "a report must survive its own encoding"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_survive_small_inputs() {
        for len in 0..300 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            frame(&data);
            batch(&data);
            segment(&data);
        }
    }
}
