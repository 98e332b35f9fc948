//! The workload's own record of what it wrote, in order: write `seq` covered these blocks and
//! returned at this time. From it, the state of the disk after any prefix of the writes.

/// One completed write: blocks `first..first + blocks` (in block units).
#[derive(Clone, Copy, Debug)]
pub struct Write {
    pub seq: u64,
    pub first: u64,
    pub blocks: u64,
}

/// Every write of a run, in the order they completed (one at a time: seq order).
#[derive(Default, Debug)]
pub struct History {
    pub writes: Vec<Write>,
}

impl History {
    pub fn push(&mut self, w: Write) {
        assert_eq!(
            w.seq,
            self.writes.len() as u64 + 1,
            "writes are pushed in seq order"
        );
        self.writes.push(w);
    }

    /// Per block of a disk of `blocks` blocks, the newest write among the first `k` (0: none).
    pub fn state_after(&self, k: u64, blocks: u64) -> Vec<u64> {
        let mut s = vec![0u64; blocks as usize];
        for w in self.writes.iter().take(k as usize) {
            for b in w.first..w.first + w.blocks {
                s[b as usize] = w.seq;
            }
        }
        s
    }

    pub fn get(&self, seq: u64) -> Option<&Write> {
        seq.checked_sub(1).and_then(|i| self.writes.get(i as usize))
    }
}
