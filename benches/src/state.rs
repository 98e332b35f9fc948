//! The state file: the highest acked seq, kept durable.
//!
//! The file holds the seq as decimal text and a newline, so scripts can `cat` it. It is replaced
//! atomically (write `FILE.tmp`, fsync, rename, fsync the directory), so after a crash it holds a
//! seq that the target did acknowledge. Writes happen on their own thread, coalescing ACKs that
//! arrive while the previous write is in progress.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rewind_linux::atomic;

use crate::error::{Error, Result};

/// Reads the acked seq from a state file; `None` if the file does not exist.
pub fn read_state(path: &Path) -> Result<Option<u64>> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| {
            Error::Invalid(format!(
                "state file {}: expected a seq number, found {:?}",
                path.display(),
                s.trim()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read state file {}", path.display()))(e)),
    }
}

/// Atomically replaces the state file with `seq` (durable; mode as `File::create` gives).
pub fn write_state(path: &Path, seq: u64) -> Result<()> {
    let opts = atomic::Options {
        mode: 0o666,
        durable: true,
        unique_tmp: false,
    };
    atomic::write_with(path, format!("{seq}\n").as_bytes(), opts)
        .map_err(|e| Error::io(format!("write state file {}", path.display()))(e.source))
}

#[derive(Default)]
struct Pending {
    seq: Option<u64>,
    done: bool,
    error: Option<String>,
}

/// Writes the acked seq in the background, at most one write at a time, always the newest seq.
pub struct StateWriter {
    shared: Arc<(Mutex<Pending>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl StateWriter {
    pub fn spawn(path: PathBuf) -> Result<StateWriter> {
        let shared = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                let (lock, cond) = &*sh;
                let mut written = None;
                loop {
                    let seq = {
                        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while p.seq == written && !p.done {
                            p = cond.wait(p).unwrap_or_else(|e| e.into_inner());
                        }
                        if p.seq == written {
                            return; // done and nothing new
                        }
                        p.seq
                    };
                    let Some(s) = seq else { continue };
                    if let Err(e) = write_state(&path, s) {
                        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                        p.error = Some(e.to_string());
                        return;
                    }
                    written = seq;
                }
            })
            .map_err(Error::io("spawn the state writer thread"))?;
        Ok(StateWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// A hook for [`crate::session::Session::start`] that records each new acked seq.
    pub fn hook(&self) -> crate::session::AckHook {
        let sh = Arc::clone(&self.shared);
        Box::new(move |seq| {
            let (lock, cond) = &*sh;
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            if p.seq < Some(seq) {
                p.seq = Some(seq);
                cond.notify_all();
            }
        })
    }

    /// Writes the last seq, stops the thread and reports the first write error.
    pub fn finish(mut self) -> Result<()> {
        self.stop();
        let p = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        match &p.error {
            Some(e) => Err(Error::Invalid(e.clone())),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        {
            let mut p = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
            p.done = true;
            self.shared.1.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_coalescing_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked");
        assert_eq!(read_state(&path).unwrap(), None);
        write_state(&path, 17).unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(17));
        assert_eq!(fs::read_to_string(&path).unwrap(), "17\n");
        assert!(!dir.path().join("acked.tmp").exists());

        let w = StateWriter::spawn(path.clone()).unwrap();
        let mut hook = w.hook();
        for s in 18..200 {
            hook(s);
        }
        hook(5); // never goes backwards
        w.finish().unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(199));

        fs::write(&path, "junk").unwrap();
        assert!(read_state(&path).is_err());
    }
}
