//! Whether and how the journal stores records compressed (`--journal-compression`), and the
//! per-session compressor that encodes a batch's records on the session's thread, before the
//! writer appends the chunk.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use rewind_formats::records::{RecordKind, RecordRef};
use rewind_formats::segment::encoding::encode_record;

/// zstd level the journal uses unless told otherwise: level 1 compresses block data at several
/// hundred MB/s per core, which keeps compression off the apply path's critical resource.
pub const DEFAULT_LEVEL: i32 = 1;

/// `--journal-compression`: `off`, `zstd` or `zstd:LEVEL` (LEVEL in 1..=19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalCompression {
    Off,
    Zstd { level: i32 },
}

impl Default for JournalCompression {
    fn default() -> Self {
        JournalCompression::Zstd {
            level: DEFAULT_LEVEL,
        }
    }
}

impl FromStr for JournalCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("journal compression {s:?}: expected off, zstd or zstd:LEVEL (LEVEL 1..=19)")
        };
        match s.split_once(':') {
            None if s == "off" => Ok(JournalCompression::Off),
            None if s == "zstd" => Ok(JournalCompression::default()),
            Some(("zstd", level)) => {
                let level: i32 = level.parse().map_err(|_| bad())?;
                if !(1..=19).contains(&level) {
                    return Err(bad());
                }
                Ok(JournalCompression::Zstd { level })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for JournalCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalCompression::Off => f.write_str("off"),
            JournalCompression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl JournalCompression {
    /// A compressor for one session, or None when compression is off.
    pub fn compressor(self) -> Option<RecordCompressor> {
        match self {
            JournalCompression::Off => None,
            JournalCompression::Zstd { level } => RecordCompressor::new(level)
                .inspect_err(|e| tracing::warn!("journal compression unavailable: {e}"))
                .ok(),
        }
    }
}

/// A session's zstd context and the buffer its batches' encodings go to, both reused batch
/// after batch: no allocation per record.
pub struct RecordCompressor {
    c: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
    ranges: Vec<Option<Range<usize>>>,
}

/// A batch of records above this much encoded output gives its buffer back afterwards (a
/// session keeps at most this much between batches).
const KEEP_BYTES: usize = 8 << 20;

impl RecordCompressor {
    fn new(level: i32) -> std::io::Result<RecordCompressor> {
        let mut c = zstd::bulk::Compressor::new(level)?;
        // A checksum per frame: a piece read decompresses one frame without the record's crc.
        c.include_checksum(true)?;
        Ok(RecordCompressor {
            c,
            out: Vec::new(),
            ranges: Vec::new(),
        })
    }

    /// Encodes the data records that compress by at least a BLOCK; per record, its encoding
    /// (None: stored raw), valid until the next call.
    pub(crate) fn encode(&mut self, records: &[RecordRef<'_>]) -> Vec<Option<&[u8]>> {
        if self.out.capacity() > KEEP_BYTES {
            self.out = Vec::new();
        }
        self.out.clear();
        self.ranges.clear();
        for r in records {
            let start = self.out.len();
            let encoded = r.kind == RecordKind::Data
                && r.data.len() > rewind_formats::BLOCK
                && encode_record(&mut self.c, r.data, &mut self.out);
            self.ranges.push(encoded.then_some(start..self.out.len()));
        }
        self.ranges
            .iter()
            .map(|r| r.clone().map(|r| &self.out[r]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_checked_at_the_edge() {
        assert_eq!("off".parse(), Ok(JournalCompression::Off));
        assert_eq!(
            "zstd".parse(),
            Ok(JournalCompression::Zstd {
                level: DEFAULT_LEVEL
            })
        );
        assert_eq!("zstd:7".parse(), Ok(JournalCompression::Zstd { level: 7 }));
        for bad in [
            "", "lz4", "zstd:", "zstd:0", "zstd:20", "zstd:-1", "zstd:x", "off:1",
        ] {
            let e = bad.parse::<JournalCompression>().unwrap_err();
            assert!(e.contains("expected off, zstd or zstd:LEVEL"), "{bad}: {e}");
        }
        assert_eq!(JournalCompression::Zstd { level: 3 }.to_string(), "zstd:3");
    }

    #[test]
    fn only_data_that_compresses_is_encoded() {
        let z: Vec<u8> = (0..65536u32).map(|i| (i / 256) as u8).collect();
        let mut x = 1u32;
        let random: Vec<u8> = (0..65536)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let rec = |data: &'static [u8], kind| RecordRef {
            disk: 0,
            kind,
            offset: 0,
            len: data.len().max(512) as u32,
            data,
        };
        let z: &'static [u8] = Box::leak(z.into_boxed_slice());
        let random: &'static [u8] = Box::leak(random.into_boxed_slice());
        let recs = [
            rec(z, RecordKind::Data),
            rec(random, RecordKind::Data),
            rec(&[], RecordKind::Zero),
            rec(&z[..4096], RecordKind::Data),
        ];
        let mut c = JournalCompression::default().compressor().unwrap();
        for _ in 0..2 {
            let enc = c.encode(&recs);
            assert!(enc[0].is_some_and(|e| e.len() < 4096));
            assert!(enc[1].is_none(), "random data stays raw");
            assert!(enc[2].is_none());
            assert!(enc[3].is_none(), "a single block cannot save a block");
        }
        assert!(JournalCompression::Off.compressor().is_none());
    }
}
