//! The sync's progress bar (initial sync, or the resync after a restart), when stderr is a terminal. It reads the status file like
//! any other observer (so it shows what `rewind-agent status` would), and goes away once the
//! sync is settled: a long-running agent's terminal gets logs, not a live display.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use rewind_agent::state::status::{self, Status, SyncState};

const POLL: Duration = Duration::from_millis(200);

/// The running bar; dropping it stops and clears it.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the bar for the agent whose state dir is `state_dir`; `None` when stderr is not a
/// terminal (services, tests, CI), so nothing is ever drawn there.
pub fn spawn(state_dir: PathBuf) -> Option<Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // A bar that cannot start is not worth failing the agent for.
    let thread = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || show(&state_dir, &flag))
        .ok()?;
    Some(Progress {
        stop,
        thread: Some(thread),
    })
}

fn show(state_dir: &Path, stop: &AtomicBool) {
    let pid = std::process::id();
    let mut bar: Option<ProgressBar> = None;
    while !stop.load(Ordering::SeqCst) {
        // Only this process's status counts (a stale file from an earlier agent does not).
        if let Some(st) = status::read(state_dir).ok().filter(|s| s.pid == pid) {
            match st.sync {
                SyncState::Pending | SyncState::Bitmap => {}
                SyncState::Running | SyncState::Acking => {
                    let (done, total) = scanned(&st);
                    let b = bar.get_or_insert_with(|| new_bar(total));
                    b.set_prefix(st.sync_kind.clone().unwrap_or_else(|| "sync".into()));
                    b.set_position(done);
                    b.set_message(match (st.sync, st.sync_bytes_per_sec) {
                        (SyncState::Acking, _) => "read; waiting for the target".to_string(),
                        (_, Some(r)) => format!("{}/s", HumanBytes(r)),
                        (_, None) => String::new(),
                    });
                }
                SyncState::Done | SyncState::NotNeeded => {
                    if let Some(b) = bar {
                        b.finish_with_message("done");
                    }
                    return;
                }
                SyncState::Failed => {
                    if let Some(b) = bar {
                        b.abandon_with_message("failed (see the log)");
                    }
                    return;
                }
            }
        }
        std::thread::sleep(POLL);
    }
    if let Some(b) = bar {
        b.abandon();
    }
}

/// Bytes scanned so far and in all, across the disks (each disk's percent weighted by its size).
fn scanned(st: &Status) -> (u64, u64) {
    let total: u64 = st.disks.iter().map(|d| d.size_bytes).sum();
    let done: f64 = st
        .disks
        .iter()
        .map(|d| d.size_bytes as f64 * d.sync_percent.clamp(0.0, 100.0) / 100.0)
        .sum();
    (done as u64, total)
}

fn new_bar(total: u64) -> ProgressBar {
    let b = ProgressBar::new(total);
    b.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {percent:>3}% {bytes}/{total_bytes} {msg} (eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    b
}
