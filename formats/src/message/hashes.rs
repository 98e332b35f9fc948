//! HASHES: block hashes of a disk range, asked for and answered during a resync.

use crate::bytes::{Reader, Writer};
use crate::{DecodeError, MAX_FRAME_PAYLOAD, SECTOR};

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

impl Hashes {
    pub(super) fn write(&self, w: &mut Writer) {
        w.name(&self.group);
        w.u16(self.disk);
        w.u64(self.offset);
        w.u32(self.block_size);
        let n = u32::try_from(self.hashes.len()).expect("more than u32::MAX hashes");
        w.u32(n);
        for h in &self.hashes {
            w.u64(*h);
        }
    }
}

pub(super) fn read_hashes(r: &mut Reader<'_>) -> Result<Hashes, DecodeError> {
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

const _: () = assert!(MAX_HASHES * 8 < MAX_FRAME_PAYLOAD);
