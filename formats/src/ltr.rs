//! Long-term retention: the manifest of one archived point (an image layer in object storage).
//!
//! A kept point of a disk is stored as fixed-size chunks, each content-addressed by the BLAKE3
//! hash of its plain bytes and stored zstd-compressed once under `chunks/<hash>`; all-zero chunks
//! are not stored. The manifest, written last, lists them in disk order under
//! `points/<group>/<disk>/<seq, 20 digits>.json`. FORMATS.md describes the layout.

use serde::{Deserialize, Serialize};

/// The manifest version this build writes and reads.
pub const LTR_MANIFEST_VERSION: u32 = 1;
/// The chunk size archives are cut into (see FORMATS.md for why 64 KiB).
pub const LTR_CHUNK_SIZE: u32 = 64 << 10;
/// Smallest and largest chunk size a manifest may name.
pub const LTR_MIN_CHUNK: u32 = 4 << 10;
pub const LTR_MAX_CHUNK: u32 = 16 << 20;
/// Length of a chunk hash in hex (BLAKE3, 32 bytes).
pub const LTR_HASH_HEX: usize = 64;

/// One archived point of one disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LtrManifest {
    pub version: u32,
    pub group: String,
    pub disk: String,
    /// The journal seq the image is the disk as of.
    pub seq: u64,
    /// Source time of that seq, unix ms.
    pub time_ms: u64,
    pub disk_size: u64,
    pub chunk_size: u32,
    /// Until when a retention tier keeps this point (unix ms); garbage collection deletes the
    /// manifest after it.
    pub keep_until_ms: u64,
    /// Whether the point is app-consistent (an app-consistent tag at this seq).
    #[serde(default)]
    pub app_consistent: bool,
    /// Names of the tags at this seq (so `tag:NAME` still finds it).
    #[serde(default)]
    pub tags: Vec<String>,
    /// One per chunk, in disk order: the chunk's hash in lowercase hex, or "" for all zeroes.
    pub chunks: Vec<String>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[error("long-term manifest field {field}: {problem}")]
pub struct LtrManifestError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: impl std::fmt::Display) -> LtrManifestError {
    LtrManifestError {
        field,
        problem: problem.to_string(),
    }
}

impl LtrManifest {
    /// The object key of the manifest of `seq` of `group/disk`.
    pub fn key(group: &str, disk: &str, seq: u64) -> String {
        format!("points/{group}/{disk}/{seq:020}.json")
    }

    /// Chunks a disk of `disk_size` bytes is cut into.
    pub fn chunk_count(disk_size: u64, chunk_size: u32) -> u64 {
        disk_size.div_ceil(u64::from(chunk_size))
    }

    /// Decode and validate.
    pub fn from_json(bytes: &[u8]) -> Result<LtrManifest, LtrManifestError> {
        let m: LtrManifest = serde_json::from_slice(bytes).map_err(|e| bad("json", e))?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }

    /// Every field checked; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), LtrManifestError> {
        if self.version != LTR_MANIFEST_VERSION {
            return Err(bad(
                "version",
                format!(
                    "{} is not {LTR_MANIFEST_VERSION}, the version this build reads",
                    self.version
                ),
            ));
        }
        crate::validate_name(&self.group).map_err(|e| bad("group", e))?;
        crate::validate_name(&self.disk).map_err(|e| bad("disk", e))?;
        if !self.chunk_size.is_power_of_two()
            || !(LTR_MIN_CHUNK..=LTR_MAX_CHUNK).contains(&self.chunk_size)
        {
            return Err(bad(
                "chunk_size",
                format!(
                    "{} is not a power of two in {LTR_MIN_CHUNK}..={LTR_MAX_CHUNK}",
                    self.chunk_size
                ),
            ));
        }
        let want = Self::chunk_count(self.disk_size, self.chunk_size);
        if self.chunks.len() as u64 != want {
            return Err(bad(
                "chunks",
                format!(
                    "{} entries for a disk of {} bytes in chunks of {} (want {want})",
                    self.chunks.len(),
                    self.disk_size,
                    self.chunk_size
                ),
            ));
        }
        for (i, c) in self.chunks.iter().enumerate() {
            if !c.is_empty() && !is_hash_hex(c) {
                return Err(bad(
                    "chunks",
                    format!("entry {i} ({c:?}) is neither \"\" nor a 64-digit lowercase hex hash"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `s` is a chunk hash: 64 lowercase hex digits.
pub fn is_hash_hex(s: &str) -> bool {
    s.len() == LTR_HASH_HEX && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LtrManifest {
        LtrManifest {
            version: 1,
            group: "g".into(),
            disk: "d".into(),
            seq: 7,
            time_ms: 1000,
            disk_size: 3 * 65536 + 1,
            chunk_size: 65536,
            keep_until_ms: 5000,
            app_consistent: false,
            tags: vec![],
            chunks: vec!["".into(), "a".repeat(64), "".into(), "0".repeat(64)],
        }
    }

    #[test]
    fn round_trips_and_validates() {
        let m = sample();
        assert_eq!(LtrManifest::from_json(&m.to_json()).unwrap(), m);
        let mut short = sample();
        short.chunks.pop();
        assert!(matches!(short.validate(), Err(e) if e.field == "chunks"));
        let mut bad_hash = sample();
        bad_hash.chunks[1] = "A".repeat(64);
        assert!(matches!(bad_hash.validate(), Err(e) if e.field == "chunks"));
        let mut odd = sample();
        odd.chunk_size = 65535;
        assert!(matches!(odd.validate(), Err(e) if e.field == "chunk_size"));
        let mut name = sample();
        name.group = "../x".into();
        assert!(matches!(name.validate(), Err(e) if e.field == "group"));
        assert_eq!(
            LtrManifest::key("g", "d", 7),
            "points/g/d/00000000000000000007.json"
        );
    }
}
