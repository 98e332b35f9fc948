//! Message payloads: what a frame (see [`crate::frame`]) carries, one message per frame.
//!
//! Building blocks (all integers little-endian):
//! - `name`: u8 length (1..=255) + that many bytes, checked by [`crate::validate_name`];
//! - `text`: u16 length (<= [`MAX_MESSAGE_LEN`]) + that many bytes of UTF-8;
//! - `tag`: a [`TagInfo`] as drawn in [`crate::tag`];
//! - lists: a count (u16 unless noted) followed by the elements back to back.
//!
//! | message  | payload, in order                                                                     |
//! |----------|---------------------------------------------------------------------------------------|
//! | HELLO    | agent name, software (version 2 on: u8 length 0..=64 + printable ASCII), dedup_window u32 (version 3 on, <= 65536), flags u8 (version 5 on: bit 0 framed records asked, other bits 0), u16 n, n x { group name, generation u64, last_acked u64, epoch u64 (version 4 on), u16 m, m x { disk name, size_bytes u64 } } |
//! | WELCOME  | u16 n, n x { group name, generation u64, status u8 ([`ResumeStatus`]), durable u64 }, dedup_window u32 (version 3 on), flags u8 (version 5 on: bit 0 framed records granted, other bits 0) |
//! | BATCH    | group name, generation u64, first_seq u64, record_count u32, timestamp_ms u64, uncompressed_len u32, compressed_len u32, compressed bytes |
//! | TAG      | group name, generation u64, tag                                                       |
//! | ACK      | group name, durable u64                                                               |
//! | HASHES   | group name, disk u16, offset u64, block_size u32, u32 n, n x hash u64                 |
//! | CONTROL  | group name, op u16 ([`ControlOp`]), arg text                                          |
//! | ERROR    | code u16 ([`ErrorCode`]), message text                                                |
//!
//! Every decoder consumes the payload exactly: trailing bytes are [`DecodeError::Invalid`], since
//! they mean writer and reader disagree about the layout. Counts are checked against the bytes
//! left before anything is allocated.

mod batch;
mod control;
mod error;
mod hashes;
mod hello;

use crate::bytes::{Reader, Writer};
use crate::frame::{encode_frame_version, FrameKind};
use crate::{DecodeError, FRAME_VERSION, FRAME_VERSION_MIN, MAX_MESSAGE_LEN};

pub(crate) use batch::BATCH_FIXED_LEN;
pub use batch::{Ack, Batch, BatchRef, Tag};
pub use control::{Control, ControlOp, TAG_REFUSED_PREFIX};
pub use error::{stale_epoch_held, ErrorCode, ErrorMsg, STALE_EPOCH_HELD};
pub use hashes::{Hashes, MAX_HASHES};
pub use hello::{
    validate_software, DiskInfo, Hello, HelloGroup, ResumeStatus, Welcome, WelcomeGroup,
    MAX_SOFTWARE_LEN,
};

pub use crate::tag::{TagInfo, TagKind};

/// One message: the payload of one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Batch(Batch),
    Tag(Tag),
    Ack(Ack),
    Hashes(Hashes),
    Control(Control),
    Error(ErrorMsg),
}

impl Message {
    /// The frame kind that carries this message.
    pub fn kind(&self) -> FrameKind {
        match self {
            Message::Hello(_) => FrameKind::Hello,
            Message::Welcome(_) => FrameKind::Welcome,
            Message::Batch(_) => FrameKind::Batch,
            Message::Tag(_) => FrameKind::Tag,
            Message::Ack(_) => FrameKind::Ack,
            Message::Hashes(_) => FrameKind::Hashes,
            Message::Control(_) => FrameKind::Control,
            Message::Error(_) => FrameKind::Error,
        }
    }

    /// The payload bytes.
    ///
    /// Texts (ERROR message, CONTROL arg) over [`MAX_MESSAGE_LEN`] bytes are cut to fit
    /// ([`truncate_text`]).
    ///
    /// # Panics
    /// If a name is over 255 bytes, or a list longer than its count field can say: such a value
    /// has no encoding. Validate input before building messages from it
    /// ([`crate::validate_name`]).
    pub fn encode_payload(&self) -> Vec<u8> {
        self.encode_payload_version(FRAME_VERSION)
    }

    /// The payload bytes in frame layout `version` (only HELLO and WELCOME differ between
    /// versions: version 1 has no software version, versions 1 and 2 no dedup window, versions
    /// before 5 no flags).
    ///
    /// # Panics
    /// As [`Message::encode_payload`].
    pub fn encode_payload_version(&self, version: u16) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Message::Hello(m) => m.write(&mut w, version),
            Message::Welcome(m) => m.write(&mut w, version),
            Message::Batch(m) => m.write(&mut w),
            Message::Tag(m) => m.write(&mut w),
            Message::Ack(m) => m.write(&mut w),
            Message::Hashes(m) => m.write(&mut w),
            Message::Control(m) => m.write(&mut w),
            Message::Error(m) => m.write(&mut w),
        }
        w.into_vec()
    }

    /// Decodes a payload of the given kind in this build's frame layout ([`FRAME_VERSION`]).
    /// Never panics; rejects trailing bytes.
    pub fn decode(kind: FrameKind, payload: &[u8]) -> Result<Message, DecodeError> {
        Message::decode_version(FRAME_VERSION, kind, payload)
    }

    /// Decodes a payload of the given kind in frame layout `version` (the frame header's).
    /// Never panics; rejects trailing bytes and versions this build does not read.
    pub fn decode_version(
        version: u16,
        kind: FrameKind,
        payload: &[u8],
    ) -> Result<Message, DecodeError> {
        if !(FRAME_VERSION_MIN..=FRAME_VERSION).contains(&version) {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let mut r = Reader::new(payload);
        let msg = match kind {
            FrameKind::Hello => Message::Hello(hello::read_hello(&mut r, version)?),
            FrameKind::Welcome => Message::Welcome(hello::read_welcome(&mut r, version)?),
            FrameKind::Batch => Message::Batch(batch::read_batch(&mut r)?.to_owned()),
            FrameKind::Tag => Message::Tag(Tag::read(&mut r)?),
            FrameKind::Ack => Message::Ack(Ack::read(&mut r)?),
            FrameKind::Hashes => Message::Hashes(hashes::read_hashes(&mut r)?),
            FrameKind::Control => Message::Control(control::read_control(&mut r, version)?),
            FrameKind::Error => Message::Error(ErrorMsg::read(&mut r)?),
        };
        r.finish(message_name(kind))?;
        Ok(msg)
    }

    /// The whole frame: header + payload (see [`crate::frame::encode_frame`]), in this build's
    /// frame layout.
    ///
    /// # Panics
    /// As [`Message::encode_payload`], and if the payload is over [`crate::MAX_FRAME_PAYLOAD`].
    pub fn to_frame(&self) -> Vec<u8> {
        self.to_frame_version(FRAME_VERSION)
    }

    /// The whole frame in layout `version`: how the target answers an agent whose HELLO came in
    /// an older version.
    ///
    /// # Panics
    /// As [`Message::to_frame`], and if this build cannot write `version`.
    pub fn to_frame_version(&self, version: u16) -> Vec<u8> {
        encode_frame_version(version, self.kind(), &self.encode_payload_version(version))
    }
}

/// The longest prefix of `s` that fits a `text` field ([`MAX_MESSAGE_LEN`] bytes), cut on a char
/// boundary. Texts (error messages, control arguments) are built from reasons and names that
/// come from elsewhere (a fence reason typed by an operator, a path): an over-long one is sent
/// shortened, never panics the sender, so the peer is still told why a session ends.
pub fn truncate_text(s: &str) -> &str {
    if s.len() <= MAX_MESSAGE_LEN {
        return s;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn message_name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Hello => "HELLO payload",
        FrameKind::Welcome => "WELCOME payload",
        FrameKind::Batch => "BATCH payload",
        FrameKind::Tag => "TAG payload",
        FrameKind::Ack => "ACK payload",
        FrameKind::Hashes => "HASHES payload",
        FrameKind::Control => "CONTROL payload",
        FrameKind::Error => "ERROR payload",
    }
}

fn count_u16(what: &str, n: usize) -> u16 {
    u16::try_from(n).unwrap_or_else(|_| panic!("{what}: {n} do not fit a u16 count"))
}

const _: () = assert!(MAX_MESSAGE_LEN < u16::MAX as usize);

#[cfg(test)]
mod tests;
