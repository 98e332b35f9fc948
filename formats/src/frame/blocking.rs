//! Reading whole frames from a blocking byte stream (`std::io::Read`): the agent's ACK reader,
//! the load generator and tests. (The target reads frames on async streams with its own reader,
//! which reuses one payload buffer per session.)
//!
//! A clean close between frames is `Ok(None)`; a close inside a frame is [`ReadError::Cut`].

use std::io::{self, Read};

use super::{FrameHeader, FRAME_HEADER_LEN};
use crate::{DecodeError, Message};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream ended part way through a frame: `got` of the `want` bytes arrived (`want` is
    /// the header's length until the header is in, then the whole frame's).
    #[error("connection closed inside a frame ({got} of {want} bytes)")]
    Cut { got: usize, want: usize },
    /// Reading failed (a timeout shows here as `WouldBlock` or `TimedOut`).
    #[error("{0}")]
    Io(#[source] io::Error),
    /// The frame header does not decode: the stream cannot be followed any further.
    #[error("bad frame header: {0}")]
    Header(#[source] DecodeError),
    /// The payload does not match the header's length or checksum.
    #[error("bad frame payload: {0}")]
    Payload(#[source] DecodeError),
    /// The payload is not a valid message of the frame's kind.
    #[error("bad message: {0}")]
    Message(#[source] DecodeError),
}

impl ReadError {
    /// The decode error, for the variants that have one.
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            ReadError::Header(e) | ReadError::Payload(e) | ReadError::Message(e) => Some(e),
            ReadError::Cut { .. } | ReadError::Io(_) => None,
        }
    }
}

/// Fills `buf` completely. Returns false when the stream ended before any byte and `before`
/// bytes of this frame were read so far (a clean close between frames).
fn fill(r: &mut impl Read, buf: &mut [u8], before: usize, want: usize) -> Result<bool, ReadError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 && before == 0 => return Ok(false),
            Ok(0) => {
                return Err(ReadError::Cut {
                    got: before + got,
                    want,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(true)
}

/// Reads and decodes one frame header; `Ok(None)` when the stream closed cleanly before it.
/// The payload is not read: most callers want [`read_frame`].
pub fn read_header(r: &mut impl Read) -> Result<Option<FrameHeader>, ReadError> {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    if !fill(r, &mut hdr, 0, FRAME_HEADER_LEN)? {
        return Ok(None);
    }
    FrameHeader::decode(&hdr)
        .map(Some)
        .map_err(ReadError::Header)
}

/// Reads `header`'s payload into `payload` (resized to fit) and verifies its checksum.
pub fn read_payload(
    r: &mut impl Read,
    header: &FrameHeader,
    payload: &mut Vec<u8>,
) -> Result<(), ReadError> {
    let len = header.payload_len as usize;
    // payload_len is capped by FrameHeader::decode (MAX_FRAME_PAYLOAD), so this is bounded.
    payload.resize(len, 0);
    fill(r, payload, FRAME_HEADER_LEN, FRAME_HEADER_LEN + len)?;
    header.verify_payload(payload).map_err(ReadError::Payload)
}

/// Reads one whole frame and verifies it (header checksum, length cap, payload checksum);
/// `Ok(None)` when the stream closed cleanly between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(FrameHeader, Vec<u8>)>, ReadError> {
    let Some(header) = read_header(r)? else {
        return Ok(None);
    };
    let mut payload = Vec::new();
    read_payload(r, &header, &mut payload)?;
    Ok(Some((header, payload)))
}

/// Reads, verifies and decodes one message; `Ok(None)` when the stream closed cleanly between
/// frames.
pub fn read_message(r: &mut impl Read) -> Result<Option<Message>, ReadError> {
    let Some((header, payload)) = read_frame(r)? else {
        return Ok(None);
    };
    Message::decode_version(header.version, header.kind, &payload)
        .map(Some)
        .map_err(ReadError::Message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use crate::{Ack, Seq};

    /// A reader that hands out at most `max` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        max: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn ack() -> Message {
        Message::Ack(Ack {
            group: "g".into(),
            durable: Seq(7),
        })
    }

    #[test]
    fn reads_messages_until_a_clean_close() {
        let mut bytes = ack().to_frame();
        bytes.extend_from_slice(&encode_frame(crate::FrameKind::Tag, b"raw"));
        for max in [1, 5, usize::MAX] {
            let mut r = Trickle { data: &bytes, max };
            assert_eq!(read_message(&mut r).unwrap(), Some(ack()));
            let (h, payload) = read_frame(&mut r).unwrap().unwrap();
            assert_eq!((h.kind, payload), (crate::FrameKind::Tag, b"raw".to_vec()));
            assert!(read_frame(&mut r).unwrap().is_none());
        }
    }

    #[test]
    fn a_close_inside_a_frame_is_a_cut() {
        let f = ack().to_frame();
        for cut in 1..f.len() {
            let e = read_frame(&mut &f[..cut]).unwrap_err();
            // Inside the header, only the header's length is known.
            let whole = if cut < FRAME_HEADER_LEN {
                FRAME_HEADER_LEN
            } else {
                f.len()
            };
            assert!(
                matches!(e, ReadError::Cut { got, want } if got == cut && want == whole),
                "cut at {cut}: {e:?}"
            );
        }
    }

    #[test]
    fn damage_is_reported_by_part() {
        let f = ack().to_frame();
        let mut bad = f.clone();
        bad[0] = b'X';
        assert!(matches!(
            read_frame(&mut &bad[..]),
            Err(ReadError::Header(DecodeError::BadMagic { .. }))
        ));
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            read_frame(&mut &bad[..]),
            Err(ReadError::Payload(DecodeError::PayloadChecksum))
        ));
        let bad = encode_frame(crate::FrameKind::Ack, b"\x01g");
        let e = read_message(&mut &bad[..]).unwrap_err();
        assert!(matches!(
            e,
            ReadError::Message(DecodeError::Truncated { .. })
        ));
        assert!(e.decode_error().is_some());
    }

    #[test]
    fn io_errors_pass_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::TimedOut.into())
            }
        }
        let e = read_frame(&mut Broken).unwrap_err();
        assert!(matches!(&e, ReadError::Io(io) if io.kind() == io::ErrorKind::TimedOut));
    }
}
