//! The console of a booting machine: the boot command's stdout and stderr through one pipe,
//! copied line by line to `LOG_DIR/MACHINE.console.log` and scanned for the health line.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::fcntl::OFlag;

/// What the reader thread has seen.
#[derive(Default)]
pub struct ConsoleWatch {
    /// A line contained the awaited text.
    pub matched: AtomicBool,
    /// The pipe reached end of file: every process holding it has gone.
    pub closed: AtomicBool,
}

/// A pipe whose ends are close-on-exec, so that commands spawned at the same time by other
/// machines do not inherit this machine's write end (which would keep its console open forever).
/// The child's copies (its fds 1 and 2) are made by dup2 and so stay open in it.
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// Copy the console from `read` into the log at `log_path` until end of file, setting `matched`
/// when a line contains `wanted` (if any). Keeps reading after the match so that the log stays
/// complete and the writer never blocks on a full pipe.
pub fn spawn_reader(
    read: OwnedFd,
    log_path: &Path,
    wanted: Option<String>,
) -> std::io::Result<Arc<ConsoleWatch>> {
    let mut log = File::create(log_path)?;
    let watch = Arc::new(ConsoleWatch::default());
    let w = watch.clone();
    std::thread::Builder::new()
        .name("plan-console".into())
        .spawn(move || {
            let mut reader = BufReader::new(File::from(read));
            let mut line = Vec::new();
            // A console is not necessarily UTF-8, so lines are bytes; the match is on bytes too.
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let _ = log.write_all(&line);
                if let Some(wanted) = &wanted {
                    if contains(&line, wanted.as_bytes()) {
                        w.matched.store(true, Ordering::SeqCst);
                    }
                }
                line.clear();
            }
            let _ = log.flush();
            w.closed.store(true, Ordering::SeqCst);
        })?;
    Ok(watch)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
