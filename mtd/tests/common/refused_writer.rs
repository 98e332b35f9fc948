//! A workload that keeps writing to a protected device until its writes are refused: what a
//! planned failover drains and then fences (at the target, or through a relay).

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rewind_benches::harness::{open_direct, Rng};
use rewind_linux::aligned::AlignedBuf;

/// The writer thread: 64 KiB O_DIRECT writes of random bytes at random 64 KiB-aligned offsets in
/// the first 64 MiB of the device, until stopped or a write fails.
pub struct RefusedWriter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, Option<io::Error>)>>,
}

impl RefusedWriter {
    pub fn start(dev: &Path) -> RefusedWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let dev = dev.to_path_buf();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let f = open_direct(&dev);
                let mut buf = AlignedBuf::new(64 << 10);
                let mut rng = Rng::new(99);
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    rng.fill(&mut buf);
                    let off = (rng.next_u64() % (64 * 16)) * (64 << 10);
                    if let Err(e) = f.write_all_at(&buf, off) {
                        return (n, Some(e));
                    }
                    n += 1;
                }
                (n, None)
            })
        };
        RefusedWriter {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: how many writes it made, and the error of the one that was refused (None if it
    /// was stopped first).
    pub fn stop(mut self) -> (u64, Option<io::Error>) {
        self.halt().expect("running").expect("writer thread")
    }

    /// Tell the thread to stop and wait for it (once: None after).
    fn halt(&mut self) -> Option<std::thread::Result<(u64, Option<io::Error>)>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(JoinHandle::join)
    }
}

/// A test that fails before [`RefusedWriter::stop`] leaves no thread writing behind it.
impl Drop for RefusedWriter {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
