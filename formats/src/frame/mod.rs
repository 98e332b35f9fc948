//! Wire frames: the unit of the agent <-> master target stream.
//!
//! A frame is a fixed 24-byte header followed by `payload_len` bytes of payload (one message,
//! see [`crate::message`]). All integers little-endian.
//!
//! | off | size | field        | notes                                              |
//! |----:|-----:|--------------|----------------------------------------------------|
//! |   0 |    4 | magic        | `b"RWF1"` ([`FRAME_MAGIC`])                        |
//! |   4 |    2 | version      | 1 ([`FRAME_VERSION`])                              |
//! |   6 |    2 | kind         | [`FrameKind`]                                      |
//! |   8 |    4 | payload_len  | <= [`MAX_FRAME_PAYLOAD`]                           |
//! |  12 |    4 | payload_crc  | crc32c(payload)                                    |
//! |  16 |    4 | reserved     | must be 0                                          |
//! |  20 |    4 | header_crc   | crc32c(bytes 0..20)                                |
//!
//! The header has its own crc so that a receiver can trust `payload_len` before it allocates
//! and reads the payload; the payload crc then covers what it read. [`blocking`] reads whole
//! frames from a `std::io::Read`.

pub mod blocking;

use crate::bytes::{le_u16, le_u32};
use crate::{DecodeError, FRAME_MAGIC, FRAME_VERSION, MAX_FRAME_PAYLOAD};

/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 24;

/// The largest payload a receiver accepts as a session's first frame (the HELLO), before it knows
/// who is on the other end: a bare header announcing [`MAX_FRAME_PAYLOAD`] must not make it
/// allocate 64 MiB for a peer that has proven nothing. A HELLO at the target's default quotas (64
/// groups of 64 disks, every name 255 bytes) takes about 1.05 MiB; this leaves room above that.
pub const MAX_HELLO_PAYLOAD: usize = 2 << 20;

/// What a frame's payload holds. The wire value is the discriminant (u16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum FrameKind {
    Hello = 1,
    Welcome = 2,
    Batch = 3,
    Tag = 4,
    Ack = 5,
    Hashes = 6,
    Control = 7,
    Error = 8,
}

impl FrameKind {
    /// Every kind, in wire order.
    pub const ALL: [FrameKind; 8] = [
        FrameKind::Hello,
        FrameKind::Welcome,
        FrameKind::Batch,
        FrameKind::Tag,
        FrameKind::Ack,
        FrameKind::Hashes,
        FrameKind::Control,
        FrameKind::Error,
    ];

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The kind's name as logs and error messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Hello => "HELLO",
            FrameKind::Welcome => "WELCOME",
            FrameKind::Batch => "BATCH",
            FrameKind::Tag => "TAG",
            FrameKind::Ack => "ACK",
            FrameKind::Hashes => "HASHES",
            FrameKind::Control => "CONTROL",
            FrameKind::Error => "ERROR",
        }
    }

    /// The kind with this wire value, if this version knows it.
    pub fn from_u16(v: u16) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|k| k.as_u16() == v)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub payload_len: u32,
    pub payload_crc: u32,
}

impl FrameHeader {
    /// The header for `payload`.
    ///
    /// # Panics
    /// If `payload` is longer than [`MAX_FRAME_PAYLOAD`]: no reader would accept the frame.
    pub fn for_payload(kind: FrameKind, payload: &[u8]) -> FrameHeader {
        assert!(
            payload.len() <= MAX_FRAME_PAYLOAD,
            "frame payload of {} bytes is over MAX_FRAME_PAYLOAD ({MAX_FRAME_PAYLOAD})",
            payload.len()
        );
        FrameHeader {
            kind,
            payload_len: payload.len() as u32,
            payload_crc: crc32c::crc32c(payload),
        }
    }

    /// The 24 header bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&FRAME_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.kind.as_u16().to_le_bytes());
        b[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        // 16..20 reserved, zero.
        let crc = crc32c::crc32c(&b[0..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header. Checks magic, version, header crc, reserved == 0, kind known and the
    /// payload_len cap, in that order (version before crc: another version may checksum
    /// differently; crc before the fields: a damaged field must read as damage, not as a value).
    pub fn decode(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, DecodeError> {
        let magic = le_u32(bytes, 0);
        if magic != FRAME_MAGIC {
            return Err(DecodeError::BadMagic {
                found: u64::from(magic),
            });
        }
        let version = le_u16(bytes, 4);
        if version != FRAME_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&bytes[0..20]) != le_u32(bytes, 20) {
            return Err(DecodeError::HeaderChecksum);
        }
        let reserved = le_u32(bytes, 16);
        if reserved != 0 {
            return Err(DecodeError::invalid(
                "frame header",
                format!("reserved field is {reserved:#x}, not 0"),
            ));
        }
        let kind_raw = le_u16(bytes, 6);
        let kind = FrameKind::from_u16(kind_raw).ok_or(DecodeError::UnknownKind(kind_raw))?;
        let payload_len = le_u32(bytes, 8);
        if payload_len as usize > MAX_FRAME_PAYLOAD {
            return Err(DecodeError::too_large(
                "frame payload",
                u64::from(payload_len),
                MAX_FRAME_PAYLOAD as u64,
            ));
        }
        Ok(FrameHeader {
            kind,
            payload_len,
            payload_crc: le_u32(bytes, 12),
        })
    }

    /// Checks the header of a session's first frame: it must be a HELLO no longer than
    /// [`MAX_HELLO_PAYLOAD`] (checked before the payload is read or allocated).
    pub fn check_first(&self) -> Result<(), DecodeError> {
        if self.kind != FrameKind::Hello {
            return Err(DecodeError::invalid(
                "first frame",
                format!("{} before HELLO", self.kind.name()),
            ));
        }
        if self.payload_len as usize > MAX_HELLO_PAYLOAD {
            return Err(DecodeError::too_large(
                "HELLO payload",
                u64::from(self.payload_len),
                MAX_HELLO_PAYLOAD as u64,
            ));
        }
        Ok(())
    }

    /// Checks that `payload` has the announced length and crc.
    pub fn verify_payload(&self, payload: &[u8]) -> Result<(), DecodeError> {
        let want = self.payload_len as usize;
        if payload.len() < want {
            return Err(DecodeError::Truncated {
                need: want,
                have: payload.len(),
            });
        }
        if payload.len() > want {
            return Err(DecodeError::invalid(
                "frame payload",
                format!("{} bytes, header says {want}", payload.len()),
            ));
        }
        if crc32c::crc32c(payload) != self.payload_crc {
            return Err(DecodeError::PayloadChecksum);
        }
        Ok(())
    }
}

/// Header + payload in one Vec.
///
/// # Panics
/// If `payload` is longer than [`MAX_FRAME_PAYLOAD`].
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::for_payload(kind, payload);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

/// One decoded frame: its kind, its payload (borrowed from the input) and the bytes it took.
pub type DecodedFrame<'a> = (FrameKind, &'a [u8], usize);

/// Decodes one whole frame from the front of `buf`.
///
/// Returns `Ok(Some((kind, payload, consumed)))`, or `Ok(None)` when more bytes are needed (the
/// header or the payload is incomplete), or an error for a bad frame. After an error the stream
/// cannot be resynchronised: the receiver sends an ERROR frame and closes the connection.
pub fn decode_frame(buf: &[u8]) -> Result<Option<DecodedFrame<'_>>, DecodeError> {
    let Some(head) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Ok(None);
    };
    let header = FrameHeader::decode(head)?;
    let end = FRAME_HEADER_LEN + header.payload_len as usize;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..end) else {
        return Ok(None);
    };
    header.verify_payload(payload)?;
    Ok(Some((header.kind, payload, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_as_documented() {
        let h = FrameHeader::for_payload(FrameKind::Ack, b"abc");
        let b = h.encode();
        assert_eq!(&b[0..4], b"RWF1");
        assert_eq!(&b[4..6], &[1, 0]);
        assert_eq!(&b[6..8], &[5, 0]);
        assert_eq!(&b[8..12], &[3, 0, 0, 0]);
        assert_eq!(le_u32(&b, 12), crc32c::crc32c(b"abc"));
        assert_eq!(&b[16..20], &[0; 4]);
        assert_eq!(le_u32(&b, 20), crc32c::crc32c(&b[..20]));
        assert_eq!(FrameHeader::decode(&b), Ok(h));
    }

    #[test]
    fn decode_frame_waits_for_whole_frame() {
        let f = encode_frame(FrameKind::Hello, b"payload");
        for cut in 0..f.len() {
            assert_eq!(decode_frame(&f[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = f.clone();
        two.extend_from_slice(&f);
        let (kind, payload, used) = decode_frame(&two).unwrap().unwrap();
        assert_eq!(
            (kind, payload, used),
            (FrameKind::Hello, &b"payload"[..], f.len())
        );
    }

    #[test]
    fn every_kind_round_trips() {
        for k in FrameKind::ALL {
            assert_eq!(FrameKind::from_u16(k.as_u16()), Some(k));
        }
        assert_eq!(FrameKind::from_u16(0), None);
        assert_eq!(FrameKind::from_u16(9), None);
    }

    fn damaged(f: impl Fn(&mut [u8; FRAME_HEADER_LEN])) -> Result<FrameHeader, DecodeError> {
        let mut b = FrameHeader::for_payload(FrameKind::Batch, b"x").encode();
        f(&mut b);
        FrameHeader::decode(&b)
    }

    fn fix_crc(b: &mut [u8; FRAME_HEADER_LEN]) {
        let crc = crc32c::crc32c(&b[..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn header_damage_is_reported_in_order() {
        assert_eq!(
            damaged(|b| b[0] = b'X'),
            Err(DecodeError::BadMagic {
                found: u64::from(u32::from_le_bytes(*b"XWF1"))
            })
        );
        assert_eq!(
            damaged(|b| b[4] = 2),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(damaged(|b| b[9] ^= 1), Err(DecodeError::HeaderChecksum));
        assert!(matches!(
            damaged(|b| {
                b[16] = 1;
                fix_crc(b)
            }),
            Err(DecodeError::Invalid { .. })
        ));
        assert_eq!(
            damaged(|b| {
                b[6] = 99;
                fix_crc(b)
            }),
            Err(DecodeError::UnknownKind(99))
        );
        assert!(matches!(
            damaged(|b| {
                b[8..12].copy_from_slice(&(MAX_FRAME_PAYLOAD as u32 + 1).to_le_bytes());
                fix_crc(b)
            }),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn first_frame_must_be_a_small_hello() {
        let mut h = FrameHeader::for_payload(FrameKind::Hello, b"x");
        assert_eq!(h.check_first(), Ok(()));
        h.payload_len = MAX_HELLO_PAYLOAD as u32;
        assert_eq!(h.check_first(), Ok(()));
        h.payload_len = MAX_HELLO_PAYLOAD as u32 + 1;
        assert!(matches!(h.check_first(), Err(DecodeError::TooLarge { .. })));
        let b = FrameHeader::for_payload(FrameKind::Batch, b"x");
        assert!(matches!(b.check_first(), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn payload_damage_is_reported() {
        let mut f = encode_frame(FrameKind::Tag, b"hello");
        f[FRAME_HEADER_LEN] ^= 0x40;
        assert_eq!(decode_frame(&f), Err(DecodeError::PayloadChecksum));
        let h = FrameHeader::for_payload(FrameKind::Tag, b"hello");
        assert!(matches!(
            h.verify_payload(b"hell"),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            h.verify_payload(b"hello!"),
            Err(DecodeError::Invalid { .. })
        ));
        assert_eq!(h.verify_payload(b"hello"), Ok(()));
    }
}
