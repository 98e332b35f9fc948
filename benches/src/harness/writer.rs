//! A background workload on a protected device: random extents (4 KiB to 64 KiB, aligned, O_DIRECT)
//! at random offsets, a few hundred a second, until stopped. Writes are answered only once the
//! agent has them, so when [`Writer::stop`] returns every write is in the agent's hands.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rewind_linux::aligned::AlignedBuf;

use super::disk::{open_direct, Rng};

/// A running writer thread.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    /// Writes to the first `size` bytes of `dev` (seeded by `seed`), pausing `pause` between
    /// writes.
    pub fn start(dev: &Path, size: u64, seed: u64, pause: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let f = open_direct(dev);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed);
                let mut buf = AlignedBuf::new(64 << 10);
                let blocks = size / 4096;
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let len = 4096 * (1 + rng.next_u64() % 16);
                    let at = 4096 * (rng.next_u64() % (blocks - len / 4096 + 1));
                    let data = &mut buf[..len as usize];
                    rng.fill(data);
                    // Half of each extent compresses (zeros), as real data often does.
                    let half = data.len() / 2;
                    data[half..].fill(0);
                    f.write_all_at(data, at)
                        .unwrap_or_else(|e| panic!("writing {len} bytes at {at}: {e}"));
                    n += 1;
                    std::thread::sleep(pause);
                }
                n
            })
        };
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns how many extents were written.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
