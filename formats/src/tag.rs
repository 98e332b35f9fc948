//! Recovery point tags: [`TagInfo`] and its one encoding, shared by the TAG message, the tag
//! chunk of a journal segment and the sealed segment footer.
//!
//! | off | size | field        | notes                                 |
//! |----:|-----:|--------------|---------------------------------------|
//! |   0 |    8 | seq          | the tagged point, >= 1                |
//! |   8 |    1 | kind         | [`TagKind`]                           |
//! |   9 |    8 | timestamp_ms | wall clock, ms since the Unix epoch   |
//! |  17 |    1 | name_len     | 1..=255                               |
//! |  18 |    n | name         | [`crate::validate_name`]              |

use crate::bytes::{Reader, Writer};
use crate::{DecodeError, Seq};

/// Bytes of an encoded tag with an `n`-byte name.
pub(crate) const fn tag_encoded_len(name_len: usize) -> usize {
    18 + name_len
}

/// The smallest encoded tag (a one-byte name).
pub(crate) const TAG_MIN_LEN: usize = tag_encoded_len(1);

/// What a tag marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum TagKind {
    /// An application-consistent point (fsfreeze or a user hook quiesced the workload).
    AppConsistent = 1,
    /// A user's bookmark.
    User = 2,
    /// A failover marker (the last seq before a planned failover).
    Failover = 3,
    /// A full or partial resync starts: its seq is the first record of the resync, and the
    /// points from there until the matching `SyncEnd` are not recoverable (the disk at the
    /// target is a mix of old and new blocks). Named `initial-sync` or `resync`.
    SyncBegin = 4,
    /// The resync's last record: the point at this seq is consistent again.
    SyncEnd = 5,
}

impl TagKind {
    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The kind with this wire value, if this version knows it.
    pub fn from_u8(v: u8) -> Option<TagKind> {
        match v {
            1 => Some(TagKind::AppConsistent),
            2 => Some(TagKind::User),
            3 => Some(TagKind::Failover),
            4 => Some(TagKind::SyncBegin),
            5 => Some(TagKind::SyncEnd),
            _ => None,
        }
    }
}

/// A named recovery point.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TagInfo {
    pub seq: Seq,
    pub kind: TagKind,
    pub timestamp_ms: u64,
    pub name: String,
}

impl TagInfo {
    /// Bytes of this tag's encoding.
    pub fn encoded_len(&self) -> usize {
        tag_encoded_len(self.name.len())
    }

    /// Appends the encoding. Panics if the name is over [`crate::MAX_NAME_LEN`] bytes.
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.seq.0);
        w.u8(self.kind.as_u8());
        w.u64(self.timestamp_ms);
        w.name(&self.name);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TagInfo, DecodeError> {
        let seq = Seq(r.u64()?);
        if seq.0 == 0 {
            // Seqs start at 1: a tag names the state after some record.
            return Err(DecodeError::invalid("tag seq", "0 (seqs start at 1)"));
        }
        let kind_raw = r.u8()?;
        let kind = TagKind::from_u8(kind_raw)
            .ok_or_else(|| DecodeError::invalid("tag kind", format!("unknown value {kind_raw}")))?;
        let timestamp_ms = r.u64()?;
        let name = r.name("tag name")?;
        Ok(TagInfo {
            seq,
            kind,
            timestamp_ms,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let t = TagInfo {
            seq: Seq(0x0102),
            kind: TagKind::User,
            timestamp_ms: 7,
            name: "nightly".into(),
        };
        let mut w = Writer::new();
        t.write(&mut w);
        let b = w.into_vec();
        assert_eq!(b.len(), t.encoded_len());
        assert_eq!(&b[0..8], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[8], 2);
        assert_eq!(b[17], 7);
        assert_eq!(&b[18..], b"nightly");
        let mut r = Reader::new(&b);
        assert_eq!(TagInfo::read(&mut r), Ok(t));
    }

    #[test]
    fn unknown_kind_and_seq_zero_are_invalid() {
        let zero_seq = [0u8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'a'];
        assert!(matches!(
            TagInfo::read(&mut Reader::new(&zero_seq)),
            Err(DecodeError::Invalid { .. })
        ));
        let mut b = vec![1u8, 0, 0, 0, 0, 0, 0, 0];
        b.push(9);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&[1, b'a']);
        assert!(matches!(
            TagInfo::read(&mut Reader::new(&b)),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn serde_names_are_kebab_case() {
        assert_eq!(
            serde_json::to_string(&TagKind::AppConsistent).unwrap(),
            "\"app-consistent\""
        );
        assert_eq!(serde_json::to_string(&TagKind::User).unwrap(), "\"user\"");
        assert_eq!(
            serde_json::from_str::<TagKind>("\"failover\"").unwrap(),
            TagKind::Failover
        );
    }
}
