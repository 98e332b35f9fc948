//! What happens when a thread serving the capture files ends on its own.
//!
//! On the io_uring transport the kernel routes each request to the queue of the CPU that
//! issued it and never moves it to another queue. So if one queue thread ends (a panic, or its
//! ring fails) while the files are mounted, every later request from its CPU waits for ever:
//! writes hang instead of failing, and the rest of the agent looks healthy. The same holds for
//! the helper thread (the queues' blocking work) and the `/dev/fuse` reader, and for the fuser
//! session of the `/dev/fuse` transport, whose end (the files unmounted under the agent)
//! leaves an agent that captures nothing. An agent that cannot capture must not look as if it
//! did, so such an end stops the process at once, as a crash would: the kernel then fails
//! every waiting request, the workload sees IO errors, and the service manager starts the
//! agent again, which resyncs what was dirty, as after a kill -9.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The mount's phase, shared by its threads.
#[derive(Clone, Default)]
pub struct Phase(Arc<AtomicU8>);

/// Setting up: a thread that ends now fails the mount (the io_uring transport then falls back
/// to `/dev/fuse`).
const STARTING: u8 = 0;
/// Serving the workload: no thread may end.
const SERVING: u8 = 1;
/// Unmounting (or unmounted lazily): the threads end as the connection does.
const CLOSING: u8 = 2;

impl Phase {
    pub fn serving(&self) {
        // Only from STARTING: an unmount that began first stays an unmount.
        let _ = self
            .0
            .compare_exchange(STARTING, SERVING, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn closing(&self) {
        self.0.store(CLOSING, Ordering::Release);
    }

    /// The watch for one thread of this mount, to be held by that thread for as long as it runs.
    pub fn watch(&self, thread: &str, dir: &std::path::Path) -> EndWatch {
        EndWatch {
            phase: self.clone(),
            thread: thread.into(),
            dir: dir.to_path_buf(),
        }
    }

    fn is_serving(&self) -> bool {
        self.0.load(Ordering::Acquire) == SERVING
    }
}

/// Held by each thread serving the capture files for as long as it runs; see the module's doc.
pub struct EndWatch {
    phase: Phase,
    thread: String,
    dir: PathBuf,
}

/// The agent's exit status when its capture ended under it (EX_SOFTWARE).
pub const EXIT_CAPTURE_LOST: i32 = 70;

impl EndWatch {
    /// Whether this thread's end, now, loses the capture.
    fn loses_capture(&self) -> bool {
        self.phase.is_serving()
    }
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        if !self.loses_capture() {
            return;
        }
        tracing::error!(
            thread = self.thread,
            dir = %self.dir.display(),
            panicked = std::thread::panicking(),
            "capture: a FUSE thread ended while the capture files are mounted; exiting now so \
             that the workload's IO fails instead of waiting for ever (restart the agent)"
        );
        // No unmount, no drain: the kernel aborts the connection as the process ends, which
        // fails every request still waiting. What was dirty is resynced at the next start.
        std::process::exit(EXIT_CAPTURE_LOST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_end_while_serving_loses_the_capture() {
        let phase = Phase::default();
        let w = phase.watch("capture-ring", std::path::Path::new("/nowhere"));
        assert!(!w.loses_capture(), "starting: the mount falls back instead");
        phase.serving();
        assert!(w.loses_capture());
        phase.closing();
        assert!(
            !w.loses_capture(),
            "closing: threads end with the connection"
        );
        // An unmount that began before the mount finished starting is not undone.
        phase.serving();
        assert!(!w.loses_capture());
        drop(w);
    }
}
