//! Everything a bench leaves running or attached, undone on any exit: the normal end, an error,
//! or SIGINT/SIGTERM (the shell script's `trap cleanup EXIT`).
//!
//! The benches register what they start here as they go and forget what they stop themselves.
//! [`run`] undoes the rest in an order that lets each piece go: commands that tear down daemon
//! state first (while the daemon still answers), then loop devices (they may sit on a daemon's
//! FUSE files), then the daemons and agents that deserve a clean stop (latest first, so agents
//! stop before the target they feed), then mounts, then every other process, then the scratch
//! directory.

use std::io::Read;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// A teardown command run first on exit, its failure ignored (e.g. `rewind plan cleanup`).
type Hook = Box<dyn FnOnce() + Send>;

/// How a registered process is stopped on exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: helpers and baselines with nothing to flush.
    Kill,
    /// SIGTERM, then SIGKILL if it is still there after this long: daemons and agents.
    Term(Duration),
}

struct Registry {
    hooks: Vec<Hook>,
    loops: Vec<String>,
    procs: Vec<(i32, Stop)>,
    mounts: Vec<PathBuf>,
    workdirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    hooks: Vec::new(),
    loops: Vec::new(),
    procs: Vec::new(),
    mounts: Vec::new(),
    workdirs: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `hook` first on exit.
pub fn add_hook(hook: impl FnOnce() + Send + 'static) {
    registry().hooks.push(Box::new(hook));
}

/// Detaches loop device `dev` on exit.
pub fn add_loop(dev: &str) {
    registry().loops.push(dev.to_string());
}

/// `dev` was detached by the bench.
pub fn forget_loop(dev: &str) {
    registry().loops.retain(|d| d != dev);
}

/// Stops process `pid` on exit, as `stop` says.
pub fn add_proc(pid: u32, stop: Stop) {
    registry().procs.push((pid as i32, stop));
}

/// Process `pid` was stopped and reaped by the bench (its pid may be reused now).
pub fn forget_proc(pid: u32) {
    registry().procs.retain(|(p, _)| *p != pid as i32);
}

/// Unmounts `path` on exit if something is mounted there (lazily, after detaching any loop
/// device over a file inside it: a killed agent leaves its loop device behind).
pub fn add_mount(path: &Path) {
    registry().mounts.push(path.to_path_buf());
}

/// Removes `dir` and everything in it on exit (every directory registered: a bench that runs
/// another, as `console` runs the alert delay, has one each).
pub fn set_workdir(dir: &Path) {
    registry().workdirs.push(dir.to_path_buf());
}

/// Undoes everything registered, in the order the module documents.
pub fn run() {
    let (hooks, loops, procs, mounts, workdirs) = {
        let mut r = registry();
        (
            std::mem::take(&mut r.hooks),
            std::mem::take(&mut r.loops),
            std::mem::take(&mut r.procs),
            std::mem::take(&mut r.mounts),
            std::mem::take(&mut r.workdirs),
        )
    };
    for hook in hooks {
        hook();
    }
    for dev in &loops {
        quiet(Command::new("losetup").arg("-d").arg(dev));
    }
    for &(pid, stop) in procs.iter().rev() {
        if let Stop::Term(grace) = stop {
            terminate(pid, grace);
        }
    }
    for m in &mounts {
        if is_mountpoint(m) {
            detach_loops_under(m);
            quiet(Command::new("umount").arg("-l").arg(m));
        }
    }
    for &(pid, stop) in &procs {
        if stop == Stop::Kill {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
    }
    for dir in workdirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// SIGTERM, wait up to `grace` for the process to exit, SIGKILL if it did not; reaps it.
pub fn terminate(pid: i32, grace: Duration) {
    let pid = Pid::from_raw(pid);
    if kill(pid, Signal::SIGTERM).is_err() {
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => thread::sleep(Duration::from_millis(100)),
            _ => return,
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// Whether something is mounted at `path` (`mountpoint -q`).
pub fn is_mountpoint(path: &Path) -> bool {
    Command::new("mountpoint")
        .arg("-q")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Detaches every loop device whose backing file is inside `dir`.
fn detach_loops_under(dir: &Path) {
    let Ok(out) = Command::new("losetup")
        .args(["-l", "-n", "--raw", "-O", "NAME,BACK-FILE"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((dev, back)) = line.split_once(' ') {
            if Path::new(back.trim()).starts_with(dir) {
                quiet(Command::new("losetup").arg("-d").arg(dev));
            }
        }
    }
}

/// Runs a teardown command, its output and failure ignored.
pub fn quiet(cmd: &mut Command) {
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Where the signal handler writes the number of the signal it got (-1 before
/// [`handle_signals`]).
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe and `byte` is valid for one byte; a failed write
    // (no pipe yet) only loses the wake-up.
    unsafe {
        libc::write(WAKE.load(Ordering::Relaxed), (&raw const byte).cast(), 1);
    }
}

/// Turns SIGINT and SIGTERM into a cleanup and exit 130 or 143, like the script's traps.
///
/// The handler only wakes a thread (through a pipe) that does the cleanup. Signals are not
/// blocked instead: child processes would inherit the mask and ignore SIGTERM; handlers, unlike
/// a mask, fall back to the default in a child.
pub fn handle_signals() {
    let Ok((read, write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return;
    };
    WAKE.store(write.into_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only calls write(2), which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
    thread::spawn(move || {
        let mut sig = [0u8];
        if std::fs::File::from(read).read_exact(&mut sig).is_ok() {
            super::progress::finish();
            run();
            let code = if i32::from(sig[0]) == Signal::SIGINT as i32 {
                130
            } else {
                143
            };
            std::process::exit(code);
        }
    });
}
