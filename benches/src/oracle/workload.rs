//! The oracle's writer: writes of 1 to 8 blocks at random places on a device (O_DIRECT, one
//! at a time, so the device sees them in seq order), each block stamped by [`super::sector::fill`],
//! recorded in a [`History`] once the write returned.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rewind_linux::aligned::AlignedBuf;

use super::history::{History, Write};
use super::sector::{fill, Header, BLOCK};

/// Most blocks in one write.
const MAX_BLOCKS: u64 = 8;

/// A device being written, and what was written to it.
pub struct Workload {
    dev: File,
    blocks: u64,
    rng: Xoshiro256PlusPlus,
    buf: AlignedBuf,
    pub history: History,
}

impl Workload {
    /// On `dev` (opened O_DIRECT), over its first `size` bytes.
    pub fn open(dev: &Path, size: u64, seed: u64) -> io::Result<Workload> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(dev)?;
        Ok(Workload {
            dev: f,
            blocks: size / BLOCK as u64,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            buf: AlignedBuf::new(MAX_BLOCKS as usize * BLOCK),
            history: History::default(),
        })
    }

    /// Blocks of the disk the workload writes.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Makes `n` more writes.
    pub fn write(&mut self, n: u64) -> io::Result<()> {
        for _ in 0..n {
            let seq = self.history.writes.len() as u64 + 1;
            let len = self.rng.gen_range(1..=MAX_BLOCKS.min(self.blocks));
            let first = self.rng.gen_range(0..=self.blocks - len);
            let time_us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            for i in 0..len {
                let at = (i as usize) * BLOCK;
                let h = Header {
                    seq,
                    offset: (first + i) * BLOCK as u64,
                    time_us,
                };
                fill(&mut self.buf[at..at + BLOCK], h);
            }
            let bytes = &self.buf[..len as usize * BLOCK];
            self.dev.write_all_at(bytes, first * BLOCK as u64)?;
            self.history.push(Write {
                seq,
                first,
                blocks: len,
            });
        }
        Ok(())
    }
}
