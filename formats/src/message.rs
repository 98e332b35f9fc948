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
//! | HELLO    | agent name, u16 n, n x { group name, generation u64, last_acked u64, u16 m, m x { disk name, size_bytes u64 } } |
//! | WELCOME  | u16 n, n x { group name, generation u64, status u8 ([`ResumeStatus`]), durable u64 }  |
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

use std::collections::HashSet;

use crate::bytes::{Reader, Writer};
use crate::frame::{encode_frame, FrameKind};
use crate::{
    DecodeError, Seq, MAX_BATCH_RECORDS, MAX_BATCH_UNCOMPRESSED, MAX_FRAME_PAYLOAD,
    MAX_MESSAGE_LEN, SECTOR,
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

/// agent -> target, first frame of a session: who I am, my groups and where I stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub agent: String,
    pub groups: Vec<HelloGroup>,
}

/// One group of a HELLO. Group names are unique within a HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloGroup {
    pub group: String,
    pub generation: u64,
    /// The last seq the agent saw acknowledged (0: none).
    pub last_acked: Seq,
    /// The group's disks; a record's `disk` is an index into this list. Names unique.
    pub disks: Vec<DiskInfo>,
}

/// One protected disk. `size_bytes` is a multiple of [`SECTOR`] and > 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub disk: String,
    pub size_bytes: u64,
}

/// target -> agent, answer to HELLO: per group, where to resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub groups: Vec<WelcomeGroup>,
}

/// One group of a WELCOME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WelcomeGroup {
    pub group: String,
    pub generation: u64,
    pub status: ResumeStatus,
    /// The last seq durable on the target: the agent resumes after it.
    pub durable: Seq,
}

/// Whether the agent may resume streaming or must resync the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ResumeStatus {
    Resume = 0,
    ResyncNeeded = 1,
}

/// agent -> target: consecutive records of one group, zstd-compressed.
///
/// Records travel zstd-compressed; `records.rs` encodes/decodes them ([`Batch::build`],
/// [`Batch::decode_records`]). A decoded Batch has `first_seq >= 1`,
/// `record_count` in 1..=[`MAX_BATCH_RECORDS`], `uncompressed_len` <= [`MAX_BATCH_UNCOMPRESSED`]
/// and at least 16 bytes per record, and `first_seq + record_count - 1` does not overflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub group: String,
    pub generation: u64,
    pub first_seq: Seq,
    pub record_count: u32,
    pub timestamp_ms: u64,
    pub uncompressed_len: u32,
    pub compressed: Vec<u8>,
}

/// A BATCH decoded in place: the compressed records stay in the frame's payload, so the receiver
/// does not copy megabytes per batch. Same fields and checks as [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRef<'a> {
    pub group: String,
    pub generation: u64,
    pub first_seq: Seq,
    pub record_count: u32,
    pub timestamp_ms: u64,
    pub uncompressed_len: u32,
    pub compressed: &'a [u8],
}

impl<'a> BatchRef<'a> {
    /// Decodes a BATCH payload without copying its records. Never panics; rejects trailing bytes.
    pub fn decode(payload: &'a [u8]) -> Result<BatchRef<'a>, DecodeError> {
        let mut r = Reader::new(payload);
        let b = read_batch(&mut r)?;
        r.finish(message_name(FrameKind::Batch))?;
        Ok(b)
    }

    pub fn to_owned(&self) -> Batch {
        Batch {
            group: self.group.clone(),
            generation: self.generation,
            first_seq: self.first_seq,
            record_count: self.record_count,
            timestamp_ms: self.timestamp_ms,
            uncompressed_len: self.uncompressed_len,
            compressed: self.compressed.to_vec(),
        }
    }
}

/// agent -> target: a recovery point tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub group: String,
    pub generation: u64,
    pub tag: TagInfo,
}

/// target -> agent: everything of `group` up to `durable` is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub group: String,
    pub durable: Seq,
}

/// Either way, during resync: hashes of consecutive blocks of one disk, starting at `offset`.
/// `offset` is a multiple of [`SECTOR`], `block_size` a non-zero multiple of [`SECTOR`], and the
/// range covered does not overflow u64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashes {
    pub group: String,
    pub disk: u16,
    pub offset: u64,
    pub block_size: u32,
    pub hashes: Vec<u64>,
}

/// Most hashes one HASHES message can carry and still fit in a frame with a 255-byte group name.
pub const MAX_HASHES: usize = (MAX_FRAME_PAYLOAD - (1 + 255 + 2 + 8 + 4 + 4)) / 8;

/// target -> agent: an operation on a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub group: String,
    pub op: ControlOp,
    pub arg: String,
}

impl Control {
    /// The frame of a CONTROL message for `group`.
    pub fn frame(group: &str, op: ControlOp, arg: &str) -> Vec<u8> {
        Message::Control(Control {
            group: group.into(),
            op,
            arg: arg.into(),
        })
        .to_frame()
    }
}

/// What a CONTROL message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ControlOp {
    Drain = 1,
    Pause = 2,
    Resume = 3,
    TagRequest = 4,
    Resync = 5,
}

impl ControlOp {
    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The op with this wire value, if this version knows it.
    pub fn from_u16(v: u16) -> Option<ControlOp> {
        match v {
            1 => Some(ControlOp::Drain),
            2 => Some(ControlOp::Pause),
            3 => Some(ControlOp::Resume),
            4 => Some(ControlOp::TagRequest),
            5 => Some(ControlOp::Resync),
            _ => None,
        }
    }
}

/// Either way: something went wrong; the sender closes the connection after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub message: String,
}

/// Why an ERROR was sent. Wire u16: 1..=12 in declaration order; any other value decodes to
/// `Other(n)`, so that a newer peer's new codes still reach an older one as errors.
/// (`Other(n)` with n in 1..=12 encodes as the named code; build codes with `from_u16`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Protocol,
    BadChecksum,
    UnknownGroup,
    UnknownDisk,
    StaleGeneration,
    WrongDiskSize,
    OutOfRange,
    SeqGap,
    Busy,
    NoSpace,
    StoreFailed,
    Internal,
    /// The agent may not feed this group: it belongs to another agent identity, or the HELLO
    /// names an agent other than the one its certificate is for.
    Forbidden,
    Other(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::Protocol => 1,
            ErrorCode::BadChecksum => 2,
            ErrorCode::UnknownGroup => 3,
            ErrorCode::UnknownDisk => 4,
            ErrorCode::StaleGeneration => 5,
            ErrorCode::WrongDiskSize => 6,
            ErrorCode::OutOfRange => 7,
            ErrorCode::SeqGap => 8,
            ErrorCode::Busy => 9,
            ErrorCode::NoSpace => 10,
            ErrorCode::StoreFailed => 11,
            ErrorCode::Internal => 12,
            ErrorCode::Forbidden => 13,
            ErrorCode::Other(n) => n,
        }
    }

    /// The code for a wire value; never fails.
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            1 => ErrorCode::Protocol,
            2 => ErrorCode::BadChecksum,
            3 => ErrorCode::UnknownGroup,
            4 => ErrorCode::UnknownDisk,
            5 => ErrorCode::StaleGeneration,
            6 => ErrorCode::WrongDiskSize,
            7 => ErrorCode::OutOfRange,
            8 => ErrorCode::SeqGap,
            9 => ErrorCode::Busy,
            10 => ErrorCode::NoSpace,
            11 => ErrorCode::StoreFailed,
            12 => ErrorCode::Internal,
            13 => ErrorCode::Forbidden,
            n => ErrorCode::Other(n),
        }
    }
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
        let mut w = Writer::new();
        match self {
            Message::Hello(m) => {
                w.name(&m.agent);
                w.u16(count_u16("HELLO groups", m.groups.len()));
                for g in &m.groups {
                    w.name(&g.group);
                    w.u64(g.generation);
                    w.u64(g.last_acked.0);
                    w.u16(count_u16("HELLO disks", g.disks.len()));
                    for d in &g.disks {
                        w.name(&d.disk);
                        w.u64(d.size_bytes);
                    }
                }
            }
            Message::Welcome(m) => {
                w.u16(count_u16("WELCOME groups", m.groups.len()));
                for g in &m.groups {
                    w.name(&g.group);
                    w.u64(g.generation);
                    w.u8(g.status as u8);
                    w.u64(g.durable.0);
                }
            }
            Message::Batch(m) => {
                w.name(&m.group);
                w.u64(m.generation);
                w.u64(m.first_seq.0);
                w.u32(m.record_count);
                w.u64(m.timestamp_ms);
                w.u32(m.uncompressed_len);
                let len = u32::try_from(m.compressed.len()).expect("compressed batch over 4 GiB");
                w.u32(len);
                w.bytes(&m.compressed);
            }
            Message::Tag(m) => {
                w.name(&m.group);
                w.u64(m.generation);
                m.tag.write(&mut w);
            }
            Message::Ack(m) => {
                w.name(&m.group);
                w.u64(m.durable.0);
            }
            Message::Hashes(m) => {
                w.name(&m.group);
                w.u16(m.disk);
                w.u64(m.offset);
                w.u32(m.block_size);
                let n = u32::try_from(m.hashes.len()).expect("more than u32::MAX hashes");
                w.u32(n);
                for h in &m.hashes {
                    w.u64(*h);
                }
            }
            Message::Control(m) => {
                w.name(&m.group);
                w.u16(m.op.as_u16());
                w.long_str(truncate_text(&m.arg));
            }
            Message::Error(m) => {
                w.u16(m.code.as_u16());
                w.long_str(truncate_text(&m.message));
            }
        }
        w.into_vec()
    }

    /// Decodes a payload of the given kind. Never panics; rejects trailing bytes.
    pub fn decode(kind: FrameKind, payload: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(payload);
        let msg = match kind {
            FrameKind::Hello => Message::Hello(read_hello(&mut r)?),
            FrameKind::Welcome => Message::Welcome(read_welcome(&mut r)?),
            FrameKind::Batch => Message::Batch(read_batch(&mut r)?.to_owned()),
            FrameKind::Tag => Message::Tag(Tag {
                group: r.name("group name")?,
                generation: r.u64()?,
                tag: TagInfo::read(&mut r)?,
            }),
            FrameKind::Ack => Message::Ack(Ack {
                group: r.name("group name")?,
                durable: Seq(r.u64()?),
            }),
            FrameKind::Hashes => Message::Hashes(read_hashes(&mut r)?),
            FrameKind::Control => Message::Control(read_control(&mut r)?),
            FrameKind::Error => Message::Error(ErrorMsg {
                code: ErrorCode::from_u16(r.u16()?),
                message: r.long_str("error message")?,
            }),
        };
        r.finish(message_name(kind))?;
        Ok(msg)
    }

    /// The whole frame: header + payload (see [`encode_frame`]).
    ///
    /// # Panics
    /// As [`Message::encode_payload`], and if the payload is over [`MAX_FRAME_PAYLOAD`].
    pub fn to_frame(&self) -> Vec<u8> {
        encode_frame(self.kind(), &self.encode_payload())
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

// Smallest encodings, used to cap counts before allocating: name = 2 bytes (len + 1 char).
const HELLO_GROUP_MIN: usize = 2 + 8 + 8 + 2;
const DISK_MIN: usize = 2 + 8;
const WELCOME_GROUP_MIN: usize = 2 + 8 + 1 + 8;

fn read_hello(r: &mut Reader<'_>) -> Result<Hello, DecodeError> {
    let agent = r.name("agent name")?;
    let n = u64::from(r.u16()?);
    let n = r.count("HELLO groups", n, HELLO_GROUP_MIN)?;
    let mut groups = Vec::with_capacity(n);
    let mut group_names = HashSet::with_capacity(n);
    for _ in 0..n {
        let group = r.name("group name")?;
        let generation = r.u64()?;
        let last_acked = Seq(r.u64()?);
        let m = u64::from(r.u16()?);
        let m = r.count("HELLO disks", m, DISK_MIN)?;
        let mut disks = Vec::with_capacity(m);
        let mut disk_names = HashSet::with_capacity(m);
        for _ in 0..m {
            let disk = r.name("disk name")?;
            let size_bytes = r.u64()?;
            if size_bytes == 0 || size_bytes % SECTOR != 0 {
                return Err(DecodeError::invalid(
                    "disk size",
                    format!("disk {disk}: {size_bytes} is not a non-zero multiple of {SECTOR}"),
                ));
            }
            if !disk_names.insert(disk.clone()) {
                return Err(DecodeError::invalid(
                    "HELLO disks",
                    format!("group {group}: disk {disk} listed twice"),
                ));
            }
            disks.push(DiskInfo { disk, size_bytes });
        }
        if !group_names.insert(group.clone()) {
            return Err(DecodeError::invalid(
                "HELLO groups",
                format!("group {group} listed twice"),
            ));
        }
        groups.push(HelloGroup {
            group,
            generation,
            last_acked,
            disks,
        });
    }
    Ok(Hello { agent, groups })
}

fn read_welcome(r: &mut Reader<'_>) -> Result<Welcome, DecodeError> {
    let n = u64::from(r.u16()?);
    let n = r.count("WELCOME groups", n, WELCOME_GROUP_MIN)?;
    let mut groups = Vec::with_capacity(n);
    for _ in 0..n {
        let group = r.name("group name")?;
        let generation = r.u64()?;
        let status = match r.u8()? {
            0 => ResumeStatus::Resume,
            1 => ResumeStatus::ResyncNeeded,
            v => {
                return Err(DecodeError::invalid(
                    "resume status",
                    format!("unknown value {v}"),
                ))
            }
        };
        let durable = Seq(r.u64()?);
        groups.push(WelcomeGroup {
            group,
            generation,
            status,
            durable,
        });
    }
    Ok(Welcome { groups })
}

/// Bytes of a record header; every record takes at least this much of the uncompressed payload.
const RECORD_HEADER_MIN: u64 = 16;

fn read_batch<'a>(r: &mut Reader<'a>) -> Result<BatchRef<'a>, DecodeError> {
    let group = r.name("group name")?;
    let generation = r.u64()?;
    let first_seq = Seq(r.u64()?);
    let record_count = r.u32()?;
    let timestamp_ms = r.u64()?;
    let uncompressed_len = r.u32()?;
    let compressed_len = r.u32()?;
    if first_seq.0 == 0 {
        return Err(DecodeError::invalid(
            "batch first_seq",
            "0 (seqs start at 1)",
        ));
    }
    if record_count == 0 {
        return Err(DecodeError::invalid("batch record_count", "0"));
    }
    if record_count > MAX_BATCH_RECORDS {
        return Err(DecodeError::too_large(
            "batch record_count",
            u64::from(record_count),
            u64::from(MAX_BATCH_RECORDS),
        ));
    }
    if first_seq
        .0
        .checked_add(u64::from(record_count) - 1)
        .is_none()
    {
        return Err(DecodeError::invalid(
            "batch seqs",
            format!("first_seq {first_seq} + {record_count} records overflows"),
        ));
    }
    if uncompressed_len > MAX_BATCH_UNCOMPRESSED {
        return Err(DecodeError::too_large(
            "batch uncompressed_len",
            u64::from(uncompressed_len),
            u64::from(MAX_BATCH_UNCOMPRESSED),
        ));
    }
    if u64::from(uncompressed_len) < u64::from(record_count) * RECORD_HEADER_MIN {
        return Err(DecodeError::invalid(
            "batch uncompressed_len",
            format!("{uncompressed_len} bytes cannot hold {record_count} records"),
        ));
    }
    let compressed = r.bytes(compressed_len as usize)?;
    Ok(BatchRef {
        group,
        generation,
        first_seq,
        record_count,
        timestamp_ms,
        uncompressed_len,
        compressed,
    })
}

fn read_hashes(r: &mut Reader<'_>) -> Result<Hashes, DecodeError> {
    let group = r.name("group name")?;
    let disk = r.u16()?;
    let offset = r.u64()?;
    let block_size = r.u32()?;
    let n = u64::from(r.u32()?);
    let n = r.count("HASHES hashes", n, 8)?;
    if offset % SECTOR != 0 {
        return Err(DecodeError::invalid(
            "hashes offset",
            format!("{offset} is not a multiple of {SECTOR}"),
        ));
    }
    if block_size == 0 || u64::from(block_size) % SECTOR != 0 {
        return Err(DecodeError::invalid(
            "hashes block_size",
            format!("{block_size} is not a non-zero multiple of {SECTOR}"),
        ));
    }
    let end = (n as u64)
        .checked_mul(u64::from(block_size))
        .and_then(|span| offset.checked_add(span));
    if end.is_none() {
        return Err(DecodeError::invalid(
            "hashes range",
            format!("offset {offset} + {n} blocks of {block_size} overflows"),
        ));
    }
    let mut hashes = Vec::with_capacity(n);
    for _ in 0..n {
        hashes.push(r.u64()?);
    }
    Ok(Hashes {
        group,
        disk,
        offset,
        block_size,
        hashes,
    })
}

fn read_control(r: &mut Reader<'_>) -> Result<Control, DecodeError> {
    let group = r.name("group name")?;
    let op_raw = r.u16()?;
    let op = ControlOp::from_u16(op_raw)
        .ok_or_else(|| DecodeError::invalid("control op", format!("unknown value {op_raw}")))?;
    let arg = r.long_str("control arg")?;
    Ok(Control { group, op, arg })
}

const _: () = assert!(MAX_HASHES * 8 < MAX_FRAME_PAYLOAD);
const _: () = assert!(MAX_MESSAGE_LEN < u16::MAX as usize);

#[cfg(test)]
mod tests;
