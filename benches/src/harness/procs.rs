//! Child processes stopped and reaped by pid (never by name: other tests run at the same time).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// SIGTERM, then wait up to `limit` for the exit; past it, SIGKILL and reap. The exit status, or
/// `None` when it had to be killed.
pub fn sigterm_and_wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_or_kill(child, limit)
}

/// Waits up to `limit` for `child` to exit by itself; past it, SIGKILL and reap (`None`).
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if t0.elapsed() > limit {
            kill_and_reap(child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL (unless it already exited: not reaped yet, its pid is still its own) and reap.
pub fn kill_and_reap(child: &mut Child) {
    if child.try_wait().ok().flatten().is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
}

/// A child process killed (by pid) when the test ends.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc(Some(cmd.stdin(Stdio::null()).spawn().expect("spawn")))
    }

    pub fn wait_timeout(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.0.as_mut().unwrap().try_wait().unwrap() {
                self.0 = None;
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "process did not finish within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_and_reap(&mut c);
        }
    }
}

/// Waits until `child` has made `path` (a ready file, a socket). Panics, with `log()`, when
/// `child` (named `name`) exits first or `limit` passes.
pub fn wait_for_path(
    child: &mut Child,
    path: &Path,
    limit: Duration,
    name: &str,
    log: &dyn Fn() -> String,
) {
    let t0 = Instant::now();
    while !path.exists() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("{name} exited early ({s}):\n{}", log());
        }
        assert!(
            t0.elapsed() < limit,
            "{name} made no {} within {limit:?}:\n{}",
            path.display(),
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
