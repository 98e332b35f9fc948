//! Progress on stderr: `bench [+Ns]: ...` lines (seconds since the start, as the script's
//! `$SECONDS`), with an indicatif spinner that shows the current step and its elapsed time while
//! stderr is a terminal (indicatif draws nothing otherwise, so logs stay plain lines).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

struct Progress {
    start: Instant,
    bar: ProgressBar,
}

static PROGRESS: OnceLock<Progress> = OnceLock::new();

fn progress() -> &'static Progress {
    PROGRESS.get_or_init(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            start: Instant::now(),
            bar,
        }
    })
}

/// Starts the clock of the `+Ns` stamps (otherwise the first log line starts it).
pub fn start() {
    progress();
}

/// Logs `bench [+Ns]: MSG` and shows MSG as the current step.
pub fn log(msg: impl AsRef<str>) {
    let p = progress();
    let msg = msg.as_ref();
    let line = format!("bench [+{}s]: {msg}", p.start.elapsed().as_secs());
    p.bar.suspend(|| eprintln!("{line}"));
    p.bar.set_message(msg.to_string());
}

/// Prints a line on stderr as it is, without disturbing the spinner.
pub fn note(line: impl AsRef<str>) {
    progress().bar.suspend(|| eprintln!("{}", line.as_ref()));
}

/// Runs `f` with the spinner cleared, for commands that write to the terminal themselves.
pub fn hidden<R>(f: impl FnOnce() -> R) -> R {
    progress().bar.suspend(f)
}

/// Clears the spinner for good, before the report.
pub fn finish() {
    if let Some(p) = PROGRESS.get() {
        p.bar.finish_and_clear();
    }
}
