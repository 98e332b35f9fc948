//! What one agent may make the target hold: groups, disks, disk sizes, index memory, journal
//! padding, and how far ahead of the target's clock its batches may be stamped.
//!
//! Every limit is checked at admission (HELLO or batch), before anything is created, allocated or
//! queued, so a refusal changes nothing. The index and padding quotas also bound the work of a
//! restart: the index is rebuilt from the journal segments, and the journal holds only what was
//! admitted under these quotas (merged segments leave the index and the journal together).

use std::time::Duration;

use rewind_formats::segment::{ChunkHeader, Encoding};
use rewind_formats::{RecordKind, BLOCK};

use super::index::EXTENT_COST_BYTES;

/// Per-agent limits (flags of `rewind-mtd serve`).
#[derive(Clone, Debug)]
pub struct Quotas {
    /// Groups one agent identity may own (`--max-groups-per-agent`).
    pub max_groups_per_agent: usize,
    /// Disks in one group (`--max-disks-per-group`).
    pub max_disks_per_group: usize,
    /// Largest disk an agent may declare (`--max-disk-size`). An overlay keeps one bit per 4 KiB
    /// block in memory (256 MiB for 8 TiB) and the base image must fit as a sparse file (ext4
    /// caps files at 16 TiB), so a declared size is checked before anything is sized from it.
    pub max_disk_size: u64,
    /// Estimated extent-index memory of one group, journal not yet merged
    /// (`--max-index-bytes-per-group`).
    pub max_index_bytes_per_group: u64,
    /// Journal bytes one group may spend padding records smaller than a block
    /// (`--max-padding-bytes-per-group`); see `padding_of`.
    pub max_padding_bytes_per_group: u64,
    /// How far ahead of the target's clock a batch may be stamped (`--max-clock-skew`): a
    /// segment expires by its newest timestamp, and the merger takes segments oldest first, so
    /// one batch stamped in 2100 would stop merging for its group for good.
    pub max_clock_skew: Duration,
    /// Largest dedup window granted to a relay's session, in 4 KiB blocks, per group
    /// (`--max-dedup-window`): the target keeps that many blocks in memory per group a relay
    /// feeds. 0 grants none.
    pub max_dedup_window_blocks: u32,
}

/// 32 MiB of blocks per relayed group.
pub const DEFAULT_DEDUP_WINDOW_BLOCKS: u32 = 8192;

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_groups_per_agent: 64,
            max_disks_per_group: 64,
            max_disk_size: 8 << 40,
            max_index_bytes_per_group: 256 << 20,
            max_padding_bytes_per_group: 4 << 30,
            max_clock_skew: Duration::from_secs(300),
            max_dedup_window_blocks: DEFAULT_DEDUP_WINDOW_BLOCKS,
        }
    }
}

impl Quotas {
    /// Index memory that `records` more records would add (an upper estimate per record).
    pub(crate) fn index_cost(records: u64) -> u64 {
        records.saturating_mul(EXTENT_COST_BYTES as u64)
    }
}

/// Journal bytes spent padding the data records of a chunk to whole blocks.
///
/// Records are stored block-aligned so that views read them in place with O_DIRECT; a record
/// smaller than a block therefore takes a whole block (512 bytes of data in 4096: 8x). The agent
/// does send such records (its capture is sector-granular: a 512-byte O_DIRECT write becomes a
/// 512-byte record), so refusing them would stop the replication of any workload that writes
/// single sectors. Storing them packed needs a new segment layout. Instead the padding is
/// charged to a per-group quota: honest small writes fit it for a whole retention window, and a
/// hostile agent cannot turn a little wire traffic into unbounded journal bytes.
pub(crate) fn padding_of(h: &ChunkHeader) -> u64 {
    h.records
        .iter()
        // An encoded record is never smaller than a BLOCK, and saves at least one.
        .filter(|r| r.kind == RecordKind::Data && r.encoding == Encoding::Raw)
        .map(|r| pad(u64::from(r.len)))
        .sum()
}

/// Padding of one data record of `len` bytes.
pub(crate) fn pad(len: u64) -> u64 {
    len.next_multiple_of(BLOCK as u64) - len
}
