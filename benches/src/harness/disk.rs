//! Test data on devices and images: seeded incompressible writes through O_DIRECT (no page
//! cache between a write and its capture), and byte-for-byte comparisons.

use std::fs;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rewind_linux::aligned::AlignedBuf;

/// A xorshift64 generator: cheap, seeded, incompressible test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// Opens a protected device (or any file) for O_DIRECT writes.
pub fn open_direct(dev: &Path) -> fs::File {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| panic!("opening {} for direct writes: {e}", dev.display()))
}

/// Writes `mib` MiB of incompressible data (seeded) through `dev` with O_DIRECT, in 1 MiB
/// writes from `at_mib` MiB; returns how long the writes took.
pub fn write_random_mib(dev: &Path, at_mib: u64, mib: u64, seed: u64) -> Duration {
    let f = open_direct(dev);
    let mut buf = AlignedBuf::new(1 << 20);
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    for i in 0..mib {
        rng.fill(&mut buf);
        f.write_all_at(&buf, (at_mib + i) << 20).expect("write");
    }
    t0.elapsed()
}

/// One 4 KiB O_DIRECT write of `byte` at `offset` of `dev`: how the workload sees a write.
pub fn try_write_direct(dev: &Path, offset: u64, byte: u8) -> std::io::Result<()> {
    let f = open_direct(dev);
    let mut buf = AlignedBuf::new(4096);
    buf.fill(byte);
    f.write_all_at(&buf, offset)
}

/// Asserts two files are equal byte for byte (cmp).
pub fn assert_same(a: &Path, b: &Path) {
    let out = Command::new("cmp").arg(a).arg(b).output().expect("cmp");
    assert!(
        out.status.success(),
        "{} and {} differ: {}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

/// `e2fsck -fn` is clean.
pub fn assert_fsck_clean(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn {} is not clean ({}):\n{}{}",
        img.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
