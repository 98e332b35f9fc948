//! The segment header: the first BLOCK of every segment file.
//!
//! | off  | size | field        | notes                                           |
//! |-----:|-----:|--------------|-------------------------------------------------|
//! |    0 |    8 | magic        | `b"RWJSEG01"` ([`SEGMENT_MAGIC`])               |
//! |    8 |    2 | version      | 1 ([`SEGMENT_VERSION`])                         |
//! |   10 |    2 | reserved     | 0                                               |
//! |   12 |    4 | reserved     | 0                                               |
//! |   16 |    8 | segment_id   |                                                 |
//! |   24 |    8 | first_seq    | >= 1: seq of the first record this segment holds|
//! |   32 |    8 | created_ms   | wall clock, ms since the Unix epoch             |
//! |   40 |    8 | generation   | the group's generation when it was created      |
//! |   48 |    1 | group_len    | 1..=255                                         |
//! |   49 |    n | group        | [`crate::validate_name`]                        |
//! | 49+n |  ... | zero padding | up to 4092, checked to be zero                  |
//! | 4092 |    4 | header_crc   | crc32c(bytes 0..4092)                           |

use crate::bytes::{le_u16, le_u32, le_u64, Reader};
use crate::{DecodeError, Seq, BLOCK, SEGMENT_MAGIC, SEGMENT_VERSION};

const CRC_OFF: usize = BLOCK - 4;
const NAME_OFF: usize = 48;

/// A decoded segment header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u64,
    pub group: String,
    pub generation: u64,
    pub first_seq: Seq,
    pub created_ms: u64,
}

impl SegmentHeader {
    /// The header block.
    ///
    /// # Panics
    /// If the group name is over [`crate::MAX_NAME_LEN`] bytes.
    pub fn encode(&self) -> [u8; BLOCK] {
        assert!(
            self.group.len() <= crate::MAX_NAME_LEN,
            "group name of {} bytes",
            self.group.len()
        );
        let mut b = [0u8; BLOCK];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        b[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_seq.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_ms.to_le_bytes());
        b[40..48].copy_from_slice(&self.generation.to_le_bytes());
        b[NAME_OFF] = self.group.len() as u8;
        b[NAME_OFF + 1..NAME_OFF + 1 + self.group.len()].copy_from_slice(self.group.as_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFF]);
        b[CRC_OFF..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the header from the first [`BLOCK`] bytes of `block` (more may follow; they are
    /// not looked at). Checks magic, version, crc, reserved fields, name, padding and first_seq.
    pub fn decode(block: &[u8]) -> Result<SegmentHeader, DecodeError> {
        let Some(b) = block.get(..BLOCK) else {
            return Err(DecodeError::Truncated {
                need: BLOCK,
                have: block.len(),
            });
        };
        let magic = le_u64(b, 0);
        if magic != SEGMENT_MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = le_u16(b, 8);
        if version != SEGMENT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if crc32c::crc32c(&b[..CRC_OFF]) != le_u32(b, CRC_OFF) {
            return Err(DecodeError::HeaderChecksum);
        }
        if le_u16(b, 10) != 0 || le_u32(b, 12) != 0 {
            return Err(DecodeError::invalid(
                "segment header",
                "reserved bytes 10..16 are not zero",
            ));
        }
        let mut r = Reader::new(&b[NAME_OFF..CRC_OFF]);
        let group = r.name("segment group name")?;
        let pad_start = NAME_OFF + 1 + group.len();
        if b[pad_start..CRC_OFF].iter().any(|&x| x != 0) {
            return Err(DecodeError::invalid(
                "segment header",
                "padding after the group name is not zero",
            ));
        }
        let first_seq = Seq(le_u64(b, 24));
        if first_seq.0 == 0 {
            return Err(DecodeError::invalid(
                "segment first_seq",
                "0 (seqs start at 1)",
            ));
        }
        Ok(SegmentHeader {
            segment_id: le_u64(b, 16),
            group,
            generation: le_u64(b, 40),
            first_seq,
            created_ms: le_u64(b, 32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            segment_id: 7,
            group: "web".into(),
            generation: 2,
            first_seq: Seq(1000),
            created_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let b = sample().encode();
        assert_eq!(&b[0..8], b"RWJSEG01");
        assert_eq!(le_u64(&b, 16), 7);
        assert_eq!(le_u64(&b, 24), 1000);
        assert_eq!(b[48], 3);
        assert_eq!(&b[49..52], b"web");
        assert_eq!(SegmentHeader::decode(&b), Ok(sample()));
        let mut longer = b.to_vec();
        longer.extend_from_slice(&[0xee; 100]);
        assert_eq!(SegmentHeader::decode(&longer), Ok(sample()));
    }

    fn refix(b: &mut [u8; BLOCK]) {
        let crc = crc32c::crc32c(&b[..CRC_OFF]);
        b[CRC_OFF..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn damage_is_detected() {
        let good = sample().encode();
        assert!(matches!(
            SegmentHeader::decode(&good[..BLOCK - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut b = good;
        b[0] = 0;
        assert!(matches!(
            SegmentHeader::decode(&b),
            Err(DecodeError::BadMagic { .. })
        ));
        let mut b = good;
        b[8] = 9;
        assert_eq!(
            SegmentHeader::decode(&b),
            Err(DecodeError::UnsupportedVersion(9))
        );
        let mut b = good;
        b[30] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(DecodeError::HeaderChecksum));
        for (off, v) in [(12, 1u8), (60, 1), (48, 0), (49, b'/')] {
            let mut b = good;
            b[off] = v;
            refix(&mut b);
            assert!(
                matches!(SegmentHeader::decode(&b), Err(DecodeError::Invalid { .. })),
                "byte {off}"
            );
        }
        let mut b = good;
        b[24..32].fill(0);
        refix(&mut b);
        assert!(SegmentHeader::decode(&b).is_err());
    }
}
