//! The one error type of every decoder in this crate.

/// Why some bytes could not be decoded.
///
/// Callers match on the variant to decide what to do with the damage (see "what a reader does
/// with each kind of damage" in `FORMATS.md`); the message says what was wrong and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DecodeError {
    /// The input ended early: `need` bytes (counted from the start of the input) were required.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// The magic number is not the one this layout starts with: not our data, or overwritten.
    #[error("bad magic {found:#x}")]
    BadMagic { found: u64 },
    /// Written by a newer (or unknown) version of the layout.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u16),
    /// The header's crc32c does not match: the header is damaged.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The payload's (or body's, or record data's) crc32c does not match.
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    /// A frame or chunk kind this version does not know.
    #[error("unknown kind {0}")]
    UnknownKind(u16),
    /// A length or count is over its cap.
    #[error("{what} too large: {len} > {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// A field holds a value its layout does not allow.
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// zstd could not decompress the payload, or it did not decompress to the announced length.
    #[error("decompression failed: {0}")]
    Decompress(String),
}

impl DecodeError {
    /// Shorthand for [`DecodeError::Invalid`].
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            what,
            why: why.into(),
        }
    }

    /// Shorthand for [`DecodeError::TooLarge`].
    pub(crate) fn too_large(what: &'static str, len: u64, max: u64) -> DecodeError {
        DecodeError::TooLarge { what, len, max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        assert_eq!(
            DecodeError::Truncated { need: 24, have: 3 }.to_string(),
            "truncated: need 24 bytes, have 3"
        );
        assert_eq!(
            DecodeError::BadMagic { found: 0x41 }.to_string(),
            "bad magic 0x41"
        );
        assert_eq!(
            DecodeError::too_large("frame payload", 10, 5).to_string(),
            "frame payload too large: 10 > 5"
        );
        assert_eq!(
            DecodeError::invalid("record", "len 0").to_string(),
            "invalid record: len 0"
        );
    }
}
