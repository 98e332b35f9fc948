//! The workload model: record `seq` as a pure function of the workload.
//!
//! For seq `s >= 1` with `n` disks:
//! - disk = `(s - 1) % n`;
//! - `seq` pattern: the `k`-th record of a disk (`k = (s - 1) / n`) goes to slot `k % slots`, so
//!   offsets advance by the record size per disk and wrap at the disk's end;
//! - `random` pattern: slot = `hash(seed, s) % slots`;
//! - offset = slot * record size, where `slots = disk size / record size`;
//! - data = the [`DataPool`] slice for `s`.
//!
//! Every record covers exactly one slot, so "disk as of seq S" is, per slot, the data of the
//! newest seq <= S that hit it, or zeroes. `verify` relies on this.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use rewind_formats::{RecordKind, RecordRef, MAX_RECORD_LEN, SECTOR};

use crate::error::{Error, Result};
use crate::pool::{DataPool, Payload};
use crate::units::DiskSpec;

/// Salt for random-pattern slots. Never change it.
const SALT_RANDOM_SLOT: u64 = 0x736c_6f74_7261_6e64; // "slotrand"

/// The splitmix64 finaliser: a fast, well-mixing 64-bit hash step.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hash of (seed, salt, value).
pub fn hash3(seed: u64, salt: u64, value: u64) -> u64 {
    mix64(seed ^ mix64(salt ^ mix64(value)))
}

/// Where successive records of a disk go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Offsets advance by the record size and wrap at the disk end.
    Seq,
    /// A hash of (seed, seq) picks the slot.
    Random,
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "seq" | "sequential" => Ok(Pattern::Seq),
            "random" | "rand" => Ok(Pattern::Random),
            _ => Err(format!("pattern {s:?}: expected seq or random")),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::Seq => "seq",
            Pattern::Random => "random",
        })
    }
}

/// Everything that determines the records of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub seed: u64,
    pub pattern: Pattern,
    pub record_size: u32,
    pub disks: Vec<DiskSpec>,
    pub payload: Payload,
}

/// Where one record goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Index into the workload's disk list (the HELLO order).
    pub disk: u16,
    /// Byte offset on that disk; a multiple of the record size.
    pub offset: u64,
}

impl Workload {
    /// Checks that every record is valid on the wire and fits its disk.
    pub fn validate(&self) -> Result<()> {
        if self.disks.is_empty() {
            return Err(Error::Invalid(
                "the workload needs at least one --disk".into(),
            ));
        }
        if self.disks.len() > usize::from(u16::MAX) + 1 {
            return Err(Error::Invalid(format!(
                "{} disks: at most 65536",
                self.disks.len()
            )));
        }
        let rs = u64::from(self.record_size);
        if rs == 0 || rs % SECTOR != 0 || self.record_size > MAX_RECORD_LEN {
            return Err(Error::Invalid(format!(
                "record size {rs}: must be a positive multiple of {SECTOR} up to {MAX_RECORD_LEN}"
            )));
        }
        let mut names = HashSet::new();
        for d in &self.disks {
            if d.size_bytes < rs {
                return Err(Error::Invalid(format!(
                    "disk {}: size {} is smaller than the record size {rs}",
                    d.name, d.size_bytes
                )));
            }
            if !names.insert(d.name.as_str()) {
                return Err(Error::Invalid(format!("disk {} given twice", d.name)));
            }
        }
        Ok(())
    }

    /// Number of record-size slots on disk `disk`.
    pub fn slots(&self, disk: usize) -> u64 {
        self.disks[disk].size_bytes / u64::from(self.record_size)
    }

    /// Number of records that make up `total_bytes` (rounded down).
    pub fn records_in(&self, total_bytes: u64) -> u64 {
        total_bytes / u64::from(self.record_size)
    }

    /// Where record `seq` (>= 1) goes.
    pub fn placement(&self, seq: u64) -> Placement {
        debug_assert!(seq >= 1);
        let n = self.disks.len() as u64;
        let idx = seq.wrapping_sub(1);
        let disk = (idx % n) as usize;
        let slots = self.slots(disk);
        let slot = match self.pattern {
            Pattern::Seq => (idx / n) % slots,
            Pattern::Random => hash3(self.seed, SALT_RANDOM_SLOT, seq) % slots,
        };
        Placement {
            disk: disk as u16,
            offset: slot * u64::from(self.record_size),
        }
    }
}

/// A workload with its data pool: gives every record in full.
pub struct Model {
    workload: Workload,
    pool: DataPool,
}

impl Model {
    /// Validates the workload and generates its standard data pool.
    pub fn new(workload: Workload) -> Result<Model> {
        workload.validate()?;
        let pool = DataPool::new(workload.seed, workload.payload);
        Ok(Model { workload, pool })
    }

    /// A model over a given pool (tests use small pools).
    pub fn with_pool(workload: Workload, pool: DataPool) -> Result<Model> {
        workload.validate()?;
        if workload.record_size as usize > pool.len() {
            return Err(Error::Invalid("record size exceeds the data pool".into()));
        }
        Ok(Model { workload, pool })
    }

    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The data of record `seq`.
    pub fn data(&self, seq: u64) -> &[u8] {
        self.pool
            .record_data(seq, self.workload.record_size as usize)
    }

    /// Where record `seq`'s data starts in the pool.
    pub fn data_pos(&self, seq: u64) -> usize {
        self.pool.position(seq, self.workload.record_size as usize)
    }

    pub fn pool(&self) -> &DataPool {
        &self.pool
    }

    /// Record `seq` as it goes on the wire.
    pub fn record(&self, seq: u64) -> RecordRef<'_> {
        let p = self.workload.placement(seq);
        RecordRef {
            disk: p.disk,
            kind: RecordKind::Data,
            offset: p.offset,
            len: self.workload.record_size,
            data: self.data(seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(pattern: Pattern) -> Workload {
        Workload {
            seed: 42,
            pattern,
            record_size: 4096,
            disks: vec![
                DiskSpec {
                    name: "sda".into(),
                    size_bytes: 1 << 20,
                },
                DiskSpec {
                    name: "sdb".into(),
                    size_bytes: (1 << 20) + 4096 + 512,
                },
            ],
            payload: Payload::Random,
        }
    }

    #[test]
    fn seq_pattern_advances_per_disk_and_wraps() {
        let w = workload(Pattern::Seq);
        assert_eq!(w.placement(1), Placement { disk: 0, offset: 0 });
        assert_eq!(w.placement(2), Placement { disk: 1, offset: 0 });
        assert_eq!(
            w.placement(3),
            Placement {
                disk: 0,
                offset: 4096
            }
        );
        assert_eq!(
            w.placement(4),
            Placement {
                disk: 1,
                offset: 4096
            }
        );
        // sda has 256 slots: its 257th record (seq 513) wraps to offset 0.
        assert_eq!(
            w.placement(511),
            Placement {
                disk: 0,
                offset: 255 * 4096
            }
        );
        assert_eq!(w.placement(513), Placement { disk: 0, offset: 0 });
        // sdb has 257 slots (the 512-byte tail is never written).
        assert_eq!(
            w.placement(514),
            Placement {
                disk: 1,
                offset: 256 * 4096
            }
        );
        assert_eq!(w.placement(516), Placement { disk: 1, offset: 0 });
    }

    #[test]
    fn offsets_stay_in_range_and_aligned() {
        for pattern in [Pattern::Seq, Pattern::Random] {
            let w = workload(pattern);
            w.validate().unwrap();
            for seq in 1..20_000 {
                let p = w.placement(seq);
                let d = &w.disks[usize::from(p.disk)];
                assert_eq!(u64::from(p.disk), (seq - 1) % 2);
                assert_eq!(p.offset % 4096, 0);
                assert!(
                    p.offset + 4096 <= d.size_bytes,
                    "{pattern} seq {seq}: {p:?}"
                );
            }
        }
    }

    #[test]
    fn random_pattern_is_deterministic_spread_and_seeded() {
        let a = workload(Pattern::Random);
        let b = workload(Pattern::Random);
        let mut c = workload(Pattern::Random);
        c.seed = 43;
        let pa: Vec<_> = (1..2000).map(|s| a.placement(s)).collect();
        let pb: Vec<_> = (1..2000).map(|s| b.placement(s)).collect();
        let pc: Vec<_> = (1..2000).map(|s| c.placement(s)).collect();
        assert_eq!(pa, pb);
        assert_ne!(pa, pc);
        let slots: HashSet<u64> = pa
            .iter()
            .filter(|p| p.disk == 0)
            .map(|p| p.offset)
            .collect();
        // 1000 draws over 256 slots should reach nearly all of them.
        assert!(slots.len() > 240, "{}", slots.len());
    }

    #[test]
    fn model_records_are_deterministic() {
        let pool = || DataPool::with_len(42, Payload::Compressible, 1 << 20);
        let m1 = Model::with_pool(workload(Pattern::Random), pool()).unwrap();
        let m2 = Model::with_pool(workload(Pattern::Random), pool()).unwrap();
        for seq in [1, 2, 3, 100, 12345] {
            assert_eq!(m1.record(seq), m2.record(seq));
            assert_eq!(m1.record(seq).data.len(), 4096);
        }
        assert_ne!(m1.data(1), m1.data(2));
    }

    #[test]
    fn validation() {
        let mut w = workload(Pattern::Seq);
        w.record_size = 1000;
        assert!(w.validate().is_err());
        let mut w = workload(Pattern::Seq);
        w.record_size = 2 << 20;
        assert!(w.validate().is_err()); // larger than sda
        let mut w = workload(Pattern::Seq);
        w.disks[1].name = "sda".into();
        assert!(w.validate().is_err());
        let mut w = workload(Pattern::Seq);
        w.disks.clear();
        assert!(w.validate().is_err());
    }
}
