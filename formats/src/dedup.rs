//! The dedup window of a session: the 4 KiB blocks a sender has sent literally, most recent
//! last, which a deduplicated data record may name instead of carrying them again.
//!
//! Both ends of a session keep the same window, in lockstep: every literal block of every batch
//! goes in, in stream order, on the sender as it encodes and on the receiver as it decodes. A
//! block is named by its absolute number in the session (the first block sent is 0), so the
//! receiver needs no hash: it keeps the last `capacity` blocks in a ring and copies the one a
//! reference names. Only the sender looks blocks up, by xxh3-128, and it compares the bytes
//! before it sends a reference: a hash collision costs a literal, never wrong data.
//!
//! Which blocks go in (the same rule on both sides, see FORMATS.md "Deduplicated records"):
//! - a plain data record whose `len` is a multiple of [`BLOCK`]: each of its blocks in order;
//! - a deduplicated record: each of its literal blocks in order (references add nothing);
//! - nothing else (zero and trim records, data records of a length not a multiple of a block).
//!
//! The window lives as long as the session: a session that ends (for any reason, including a
//! refused batch) takes both windows with it, so they can never drift apart across sessions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::{DecodeError, BLOCK};

/// The largest window a HELLO may ask for, in blocks (256 MiB of data on each side).
pub const MAX_DEDUP_WINDOW_BLOCKS: u32 = 1 << 16;

/// The index's keys are xxh3-128 hashes of the blocks already: the map takes their low 64
/// bits as they are instead of hashing them again (SipHash of every block's key showed in the
/// relay's profile).
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // (Only u128 keys go in; this folds anything else rather than ignoring it.)
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Index = HashMap<u128, u64, BuildHasherDefault<KeyIsHash>>;

/// One session's window (sender or receiver).
pub struct DedupWindow {
    capacity: usize,
    /// Blocks `next - ring.len() .. next`, block `n` at `n % capacity` once the ring is full.
    ring: Vec<Box<[u8]>>,
    /// Number of the next block to go in.
    next: u64,
    /// Sender only: xxh3-128 of a block -> its number. `hashes[slot]` says which key a slot
    /// holds, so that evicting the slot removes the key it owns and no other.
    index: Option<(Index, Vec<u128>)>,
}

impl DedupWindow {
    /// A receiver's window of `capacity` blocks (> 0, at most [`MAX_DEDUP_WINDOW_BLOCKS`]).
    pub fn receiver(capacity: u32) -> DedupWindow {
        DedupWindow::new(capacity, false)
    }

    /// A sender's window: as a receiver's, plus the index that finds repeated blocks.
    pub fn sender(capacity: u32) -> DedupWindow {
        DedupWindow::new(capacity, true)
    }

    fn new(capacity: u32, indexed: bool) -> DedupWindow {
        assert!(
            capacity > 0 && capacity <= MAX_DEDUP_WINDOW_BLOCKS,
            "dedup window of {capacity} blocks"
        );
        DedupWindow {
            capacity: capacity as usize,
            ring: Vec::new(),
            next: 0,
            index: indexed.then(|| (Index::default(), Vec::new())),
        }
    }

    /// Blocks the window can hold.
    pub fn capacity(&self) -> u32 {
        self.capacity as u32
    }

    /// Number of the next block to go in (blocks sent literally so far).
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Puts a literal block in, evicting the oldest when full.
    pub(crate) fn push(&mut self, block: &[u8]) {
        let hash = self
            .index
            .as_ref()
            .map(|_| xxhash_rust::xxh3::xxh3_128(block));
        self.push_hashed(block, hash);
    }

    /// Sender: the number of a block in the window with exactly these bytes; if there is none,
    /// puts the block in (as [`DedupWindow::push`]) and returns None. The block is hashed once
    /// for both.
    pub(crate) fn find_or_push(&mut self, block: &[u8]) -> Option<u64> {
        let hash = xxhash_rust::xxh3::xxh3_128(block);
        if let Some((map, _)) = &self.index {
            if let Some(&n) = map.get(&hash) {
                if self.block(n).is_ok_and(|b| b == block) {
                    return Some(n);
                }
            }
        }
        self.push_hashed(block, self.index.as_ref().map(|_| hash));
        None
    }

    /// Puts a block whose hash is `hash` (a sender's) in.
    fn push_hashed(&mut self, block: &[u8], hash: Option<u128>) {
        debug_assert_eq!(block.len(), BLOCK);
        let slot = (self.next % self.capacity as u64) as usize;
        if slot == self.ring.len() {
            self.ring.push(block.into());
        } else {
            self.ring[slot].copy_from_slice(block);
        }
        if let (Some((map, hashes)), Some(h)) = (self.index.as_mut(), hash) {
            if slot == hashes.len() {
                hashes.push(h);
            } else {
                let old = std::mem::replace(&mut hashes[slot], h);
                let evicted = self.next - self.capacity as u64;
                if map.get(&old) == Some(&evicted) {
                    map.remove(&old);
                }
            }
            map.insert(h, self.next);
        }
        self.next += 1;
    }

    /// Sender: the number of a block in the window with exactly these bytes, if any (the
    /// encoder uses [`DedupWindow::find_or_push`]).
    #[cfg(test)]
    pub(crate) fn find(&self, block: &[u8]) -> Option<u64> {
        let (map, _) = self.index.as_ref()?;
        let n = *map.get(&xxhash_rust::xxh3::xxh3_128(block))?;
        (self.block(n).ok()? == block).then_some(n)
    }

    /// Block `n`, or an error naming what the window holds.
    pub(crate) fn block(&self, n: u64) -> Result<&[u8], DecodeError> {
        let oldest = self.next - self.ring.len() as u64;
        if n < oldest || n >= self.next {
            return Err(DecodeError::invalid(
                "deduplicated record",
                format!(
                    "reference to window block {n}; the window holds blocks {oldest}..{}",
                    self.next
                ),
            ));
        }
        Ok(&self.ring[(n % self.capacity as u64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(v: u8) -> Vec<u8> {
        vec![v; BLOCK]
    }

    #[test]
    fn finds_what_it_holds_and_forgets_what_it_evicted() {
        let mut w = DedupWindow::sender(2);
        w.push(&block(1));
        w.push(&block(2));
        assert_eq!(w.find(&block(1)), Some(0));
        assert_eq!(w.find(&block(2)), Some(1));
        w.push(&block(3)); // evicts block 0
        assert_eq!(w.find(&block(1)), None);
        assert!(w.block(0).is_err());
        assert_eq!(w.block(2).unwrap(), &block(3)[..]);
        assert!(w.block(3).is_err(), "not sent yet");
    }

    #[test]
    fn a_repeated_block_keeps_its_newest_number() {
        let mut w = DedupWindow::sender(2);
        w.push(&block(1)); // 0
        w.push(&block(1)); // 1: the index now names 1
        w.push(&block(2)); // 2 evicts 0, which no longer owns the key
        assert_eq!(w.find(&block(1)), Some(1));
    }

    #[test]
    fn a_receiver_finds_nothing() {
        let mut w = DedupWindow::receiver(4);
        w.push(&block(7));
        assert_eq!(w.find(&block(7)), None);
        assert_eq!(w.block(0).unwrap(), &block(7)[..]);
    }
}
