//! Wire frames: the unit of the agent <-> master target stream.
//!
//! A frame is a fixed 24-byte header followed by `payload_len` bytes of payload (one message,
//! see [`crate::message`]). All integers little-endian.
//!
//! | off | size | field        | notes                                              |
//! |----:|-----:|--------------|----------------------------------------------------|
//! |   0 |    4 | magic        | `b"RWF1"` ([`FRAME_MAGIC`])                        |
//! |   4 |    2 | version      | 1..=5 ([`FRAME_VERSION_MIN`]..=[`FRAME_VERSION`])  |
//! |   6 |    2 | kind         | [`FrameKind`]                                      |
//! |   8 |    4 | payload_len  | <= [`MAX_FRAME_PAYLOAD`]                           |
//! |  12 |    4 | payload_crc  | crc32c(payload)                                    |
//! |  16 |    4 | reserved     | must be 0                                          |
//! |  20 |    4 | header_crc   | crc32c(bytes 0..20)                                |
//!
//! The header has its own crc so that a receiver can trust `payload_len` before it allocates
//! and reads the payload; the payload crc then covers what it read. [`blocking`] reads whole
//! frames from a `std::io::Read`.
//!
//! Every frame of a session carries the version of the agent's HELLO: an agent writes
//! [`FRAME_VERSION`], and the target answers in whatever version the HELLO came in, so agents
//! of an older build keep working against a newer target (upgrade targets first).

pub mod blocking;

use crate::bytes::{le_u16, le_u32};
use crate::{DecodeError, FRAME_MAGIC, FRAME_VERSION, FRAME_VERSION_MIN, MAX_FRAME_PAYLOAD};

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
    /// The layout version of this frame's header and payload.
    pub version: u16,
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
        FrameHeader::for_payload_version(FRAME_VERSION, kind, payload)
    }

    /// The header for `payload` in layout `version` (the target answers an older agent in the
    /// version of its HELLO).
    ///
    /// # Panics
    /// As [`FrameHeader::for_payload`], and if this build cannot write `version`.
    pub fn for_payload_version(version: u16, kind: FrameKind, payload: &[u8]) -> FrameHeader {
        assert!(
            (FRAME_VERSION_MIN..=FRAME_VERSION).contains(&version),
            "frame version {version} is not one this build writes"
        );
        assert!(
            payload.len() <= MAX_FRAME_PAYLOAD,
            "frame payload of {} bytes is over MAX_FRAME_PAYLOAD ({MAX_FRAME_PAYLOAD})",
            payload.len()
        );
        FrameHeader {
            version,
            kind,
            payload_len: payload.len() as u32,
            payload_crc: crc32c::crc32c(payload),
        }
    }

    /// The 24 header bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
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
        if !(FRAME_VERSION_MIN..=FRAME_VERSION).contains(&version) {
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
            version,
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
    encode_frame_version(FRAME_VERSION, kind, payload)
}

/// As [`encode_frame`], in layout `version` (see [`FrameHeader::for_payload_version`]).
pub fn encode_frame_version(version: u16, kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::for_payload_version(version, kind, payload);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

/// Rewrites a whole frame's header to layout `version` (the version field and the header crc),
/// leaving the payload as it is: how the target answers an agent whose HELLO came in an older
/// version, for every frame it sends. Only HELLO's payload differs between versions, and the
/// target never sends one.
///
/// # Panics
/// If `frame` is shorter than a header, is a HELLO or WELCOME of another version, or this build
/// cannot write `version`.
pub fn restamp_version(frame: &mut [u8], version: u16) {
    assert!(
        (FRAME_VERSION_MIN..=FRAME_VERSION).contains(&version),
        "frame version {version} is not one this build writes"
    );
    let head = frame
        .first_chunk_mut::<FRAME_HEADER_LEN>()
        .expect("a whole frame header");
    if le_u16(head, 4) == version {
        return;
    }
    let kind = le_u16(head, 6);
    assert!(
        kind != FrameKind::Hello.as_u16() && kind != FrameKind::Welcome.as_u16(),
        "a HELLO's or WELCOME's payload depends on its version: encode it again instead"
    );
    head[4..6].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&head[0..20]);
    head[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded frame: its header (kind and version), its payload (borrowed from the input) and
/// the bytes it took.
pub type DecodedFrame<'a> = (FrameHeader, &'a [u8], usize);

/// Decodes one whole frame from the front of `buf`.
///
/// Returns `Ok(Some((header, payload, consumed)))`, or `Ok(None)` when more bytes are needed (the
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
    Ok(Some((header, payload, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_as_documented() {
        let h = FrameHeader::for_payload(FrameKind::Ack, b"abc");
        let b = h.encode();
        assert_eq!(&b[0..4], b"RWF1");
        assert_eq!(&b[4..6], &[5, 0]);
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
        let (header, payload, used) = decode_frame(&two).unwrap().unwrap();
        assert_eq!(
            (header.kind, header.version, payload, used),
            (FrameKind::Hello, FRAME_VERSION, &b"payload"[..], f.len())
        );
    }

    #[test]
    fn every_readable_version_round_trips() {
        for v in FRAME_VERSION_MIN..=FRAME_VERSION {
            let f = encode_frame_version(v, FrameKind::Ack, b"abc");
            assert_eq!(&f[4..6], &v.to_le_bytes());
            let (h, payload, _) = decode_frame(&f).unwrap().unwrap();
            assert_eq!(
                (h.version, h.kind, payload),
                (v, FrameKind::Ack, &b"abc"[..])
            );
        }
    }

    #[test]
    fn restamping_changes_only_the_version_and_the_header_crc() {
        let mut f = encode_frame(FrameKind::Ack, b"payload");
        let v1 = encode_frame_version(1, FrameKind::Ack, b"payload");
        restamp_version(&mut f, 1);
        assert_eq!(f, v1);
        restamp_version(&mut f, FRAME_VERSION);
        assert_eq!(f, encode_frame(FrameKind::Ack, b"payload"));
        // A WELCOME already in the version asked for is left as it is.
        let mut w = encode_frame_version(2, FrameKind::Welcome, b"payload");
        restamp_version(&mut w, 2);
        assert_eq!(w, encode_frame_version(2, FrameKind::Welcome, b"payload"));
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
            damaged(|b| b[4] = 6),
            Err(DecodeError::UnsupportedVersion(6))
        );
        assert_eq!(
            damaged(|b| b[4] = 0),
            Err(DecodeError::UnsupportedVersion(0))
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
