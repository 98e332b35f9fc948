//! ERROR: why a session ends; the sender closes the connection after it.

use super::truncate_text;
use crate::bytes::{Reader, Writer};
use crate::DecodeError;

/// Either way: something went wrong; the sender closes the connection after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub message: String,
}

/// Why an ERROR was sent. Wire u16: 1..=15 in declaration order; any other value decodes to
/// `Other(n)`, so that a newer peer's new codes still reach an older one as errors.
/// (`Other(n)` with n in 1..=15 encodes as the named code; build codes with `from_u16`.)
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
    /// The group failed over: this source was fenced (its generation is older than the group's)
    /// and must stop for good. The message says why (the operator's reason).
    Fenced,
    /// The session comes with an older epoch than the group's (frame version 4): it comes
    /// through a path (a relay) the agent has since left, and what it carries is stale. Not
    /// the end of the agent: it goes on through its current path (unlike [`ErrorCode::Fenced`]).
    StaleEpoch,
    Other(u16),
}

/// The words before the held epoch in a [`ErrorCode::StaleEpoch`] message (`... is older than
/// epoch N ...`): the target's and the relay's refusals both say it, so that an agent whose
/// state went back (a new state directory) can move its epoch past N.
pub const STALE_EPOCH_HELD: &str = "older than epoch ";

/// The epoch held, from a [`ErrorCode::StaleEpoch`] message (see [`STALE_EPOCH_HELD`]).
pub fn stale_epoch_held(message: &str) -> Option<u64> {
    let (_, rest) = message.split_once(STALE_EPOCH_HELD)?;
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok()
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
            ErrorCode::Fenced => 14,
            ErrorCode::StaleEpoch => 15,
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
            14 => ErrorCode::Fenced,
            15 => ErrorCode::StaleEpoch,
            n => ErrorCode::Other(n),
        }
    }
}

impl ErrorMsg {
    /// Whether this ERROR from an agent ends its session: every one does but the refusal of a
    /// policy ([`crate::policy::REFUSED_PREFIX`]) or of a tag request
    /// ([`super::control::TAG_REFUSED_PREFIX`]), which the target records and goes on from.
    pub fn ends_session(&self) -> bool {
        !(self.message.starts_with(crate::policy::REFUSED_PREFIX)
            || self.message.starts_with(super::control::TAG_REFUSED_PREFIX))
    }

    pub(super) fn write(&self, w: &mut Writer) {
        w.u16(self.code.as_u16());
        w.long_str(truncate_text(&self.message));
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<ErrorMsg, DecodeError> {
        Ok(ErrorMsg {
            code: ErrorCode::from_u16(r.u16()?),
            message: r.long_str("error message")?,
        })
    }
}

#[cfg(test)]
mod stale_epoch_tests {
    use super::*;

    #[test]
    fn the_held_epoch_is_read_from_a_stale_epoch_message() {
        let m = "group g: this session's epoch 1 is older than epoch 12, which the target has";
        assert_eq!(stale_epoch_held(m), Some(12));
        assert_eq!(stale_epoch_held("older than epoch 7"), Some(7));
        assert_eq!(stale_epoch_held("group g: older than epoch x"), None);
        assert_eq!(stale_epoch_held("busy"), None);
        assert_eq!(
            stale_epoch_held("older than epoch 99999999999999999999999"),
            None
        );
    }
}
