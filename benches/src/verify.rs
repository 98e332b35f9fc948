//! The `verify` command: a dumped view against the model image.
//!
//! The model image of disk `I` as of seq `S` is zeroes overwritten by records `1..=S` of disk `I`
//! in order. Since every record covers exactly one record-size slot, it is enough to know the
//! last seq that wrote each slot (8 bytes per slot, never the data), then stream the file once,
//! slot by slot, comparing with the pool slice of that seq or with zeroes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::Model;

/// Read buffer for the image.
const READ_BUF: usize = 8 << 20;

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Identical: `bytes` compared, `records` of this disk applied.
    Match { bytes: u64, records: u64 },
    /// The first differing byte, and the seq that wrote it in the model (`None`: never written,
    /// so zero was expected).
    Mismatch {
        offset: u64,
        expected: u8,
        found: u8,
        writer: Option<u64>,
    },
    /// The file is not the size of the disk.
    SizeMismatch { expected: u64, found: u64 },
}

impl std::fmt::Display for VerifyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyOutcome::Match { bytes, records } => write!(
                f,
                "match: {bytes} bytes identical to the model ({records} records of this disk)"
            ),
            VerifyOutcome::Mismatch {
                offset,
                expected,
                found,
                writer,
            } => {
                write!(
                    f,
                    "MISMATCH at offset {offset}: expected {expected:#04x}, found {found:#04x}; "
                )?;
                match writer {
                    Some(s) => write!(f, "written by seq {s}"),
                    None => write!(f, "never written (expected zero)"),
                }
            }
            VerifyOutcome::SizeMismatch { expected, found } => write!(
                f,
                "SIZE MISMATCH: the image has {found} bytes, the disk has {expected}"
            ),
        }
    }
}

impl VerifyOutcome {
    pub fn is_match(&self) -> bool {
        matches!(self, VerifyOutcome::Match { .. })
    }
}

/// The last seq `<= seq` that wrote each slot of disk `disk_index` (0: none).
pub fn last_writers(model: &Model, disk_index: usize, seq: u64) -> (Vec<u64>, u64) {
    let w = model.workload();
    let n = w.disks.len() as u64;
    let rs = u64::from(w.record_size);
    let mut last = vec![0u64; w.slots(disk_index) as usize];
    let mut records = 0;
    let mut s = disk_index as u64 + 1;
    while s <= seq {
        let p = w.placement(s);
        last[(p.offset / rs) as usize] = s;
        records += 1;
        s += n;
    }
    (last, records)
}

/// Compares `image` with the model image of disk `disk_index` as of `seq`.
pub fn verify_image(
    model: &Model,
    disk_index: usize,
    seq: u64,
    image: &Path,
) -> Result<VerifyOutcome> {
    let w = model.workload();
    if disk_index >= w.disks.len() {
        return Err(Error::Invalid(format!(
            "--disk-index {disk_index}: the workload has {} disks",
            w.disks.len()
        )));
    }
    let disk_size = w.disks[disk_index].size_bytes;
    let what = || format!("read image {}", image.display());
    let file = File::open(image).map_err(Error::io(what()))?;
    let found = file.metadata().map_err(Error::io(what()))?.len();
    if found != disk_size {
        return Ok(VerifyOutcome::SizeMismatch {
            expected: disk_size,
            found,
        });
    }
    let (last, records) = last_writers(model, disk_index, seq);
    let rs = w.record_size as usize;
    let zero = vec![0u8; rs];
    let mut buf = vec![0u8; rs];
    let mut r = BufReader::with_capacity(READ_BUF, file);
    for (slot, &writer) in last.iter().enumerate() {
        r.read_exact(&mut buf).map_err(Error::io(what()))?;
        let expected = if writer == 0 {
            &zero[..]
        } else {
            model.data(writer)
        };
        if buf != expected {
            let i = first_difference(&buf, expected);
            return Ok(VerifyOutcome::Mismatch {
                offset: (slot * rs + i) as u64,
                expected: expected[i],
                found: buf[i],
                writer: (writer != 0).then_some(writer),
            });
        }
    }
    // The tail past the last whole slot is never written.
    let tail_start = last.len() as u64 * rs as u64;
    let mut tail = vec![0u8; (disk_size - tail_start) as usize];
    r.read_exact(&mut tail).map_err(Error::io(what()))?;
    if let Some(i) = tail.iter().position(|&b| b != 0) {
        return Ok(VerifyOutcome::Mismatch {
            offset: tail_start + i as u64,
            expected: 0,
            found: tail[i],
            writer: None,
        });
    }
    Ok(VerifyOutcome::Match {
        bytes: disk_size,
        records,
    })
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Builds the model image of a disk in memory by replaying every record (the naive way; tests
/// use it to check [`verify_image`], and it suits small disks).
pub fn replay_image(model: &Model, disk_index: usize, seq: u64) -> Vec<u8> {
    let w = model.workload();
    let mut img = vec![0u8; w.disks[disk_index].size_bytes as usize];
    for s in 1..=seq {
        let rec = model.record(s);
        if usize::from(rec.disk) == disk_index {
            let o = rec.offset as usize;
            img[o..o + rec.data.len()].copy_from_slice(rec.data);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pattern, Workload};
    use crate::pool::{DataPool, Payload};
    use crate::units::DiskSpec;

    fn model(pattern: Pattern) -> Model {
        let w = Workload {
            seed: 9,
            pattern,
            record_size: 4096,
            disks: vec![
                DiskSpec {
                    name: "a".into(),
                    size_bytes: 256 << 10,
                },
                DiskSpec {
                    name: "b".into(),
                    size_bytes: (128 << 10) + 1024,
                },
            ],
            payload: Payload::Random,
        };
        Model::with_pool(w, DataPool::with_len(9, Payload::Random, 1 << 20)).unwrap()
    }

    #[test]
    fn replayed_images_verify_and_corruption_is_located() {
        let dir = tempfile::tempdir().unwrap();
        for pattern in [Pattern::Seq, Pattern::Random] {
            let m = model(pattern);
            for disk in 0..2 {
                for seq in [0, 1, 7, 150, 500] {
                    let mut img = replay_image(&m, disk, seq);
                    let path = dir.path().join(format!("{pattern}-{disk}-{seq}.img"));
                    std::fs::write(&path, &img).unwrap();
                    let v = verify_image(&m, disk, seq, &path).unwrap();
                    assert!(v.is_match(), "{pattern} disk {disk} seq {seq}: {v}");
                    if seq >= 150 {
                        // Wrong seq: the image of seq-2 is not the image of seq.
                        let v = verify_image(&m, disk, seq - 2, &path).unwrap();
                        assert!(!v.is_match());
                    }
                    // Flip a byte in the never-written tail or in data.
                    let at = img.len() - 1;
                    img[at] ^= 0x5a;
                    std::fs::write(&path, &img).unwrap();
                    match verify_image(&m, disk, seq, &path).unwrap() {
                        VerifyOutcome::Mismatch { offset, .. } => assert_eq!(offset, at as u64),
                        other => panic!("expected mismatch, got {other}"),
                    }
                }
            }
        }
    }

    #[test]
    fn mismatch_names_the_writer_and_size_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let m = model(Pattern::Seq);
        // Seq 3 writes disk 0 at offset 4096.
        let mut img = replay_image(&m, 0, 10);
        img[4096 + 100] ^= 1;
        let path = dir.path().join("x.img");
        std::fs::write(&path, &img).unwrap();
        let v = verify_image(&m, 0, 10, &path).unwrap();
        assert_eq!(
            v,
            VerifyOutcome::Mismatch {
                offset: 4196,
                expected: img[4196] ^ 1,
                found: img[4196],
                writer: Some(3)
            }
        );
        std::fs::write(&path, &img[..4096]).unwrap();
        assert!(matches!(
            verify_image(&m, 0, 10, &path).unwrap(),
            VerifyOutcome::SizeMismatch {
                expected: 262144,
                found: 4096
            }
        ));
        assert!(verify_image(&m, 2, 10, &path).is_err());
    }
}
