//! Child processes: commands run to their output ([`run`]), and commands (boot, hook, health
//! check) run as `sh -c` in their own process group, so that stopping one also stops whatever it
//! started (qemu under a wrapper script), and stopping never touches a process that is not ours:
//! we signal the group whose id is our child's pid, never anything found by name.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A command that could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
#[error("{command} failed: {why}")]
pub struct CommandError {
    /// The command line as shown in errors (`losetup -d /dev/loop3`).
    pub command: String,
    /// The start error, or the exit status and the command's stderr.
    pub why: String,
}

/// Run a command to its end; its trimmed stdout, or an error that carries its stderr.
pub fn run(cmd: &mut Command) -> Result<String, CommandError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| CommandError {
        command: command.clone(),
        why: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(CommandError {
            command,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid, it
/// names one process, never a later one that reused the pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces), field 3 (state) comes first.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// How often waits look at a child, the clock and the cancel flag.
pub const POLL: Duration = Duration::from_millis(50);
/// How long a process group gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// `sh -c CMD` in a new process group (its id is the child's pid), stdin from /dev/null.
pub fn shell(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd).stdin(Stdio::null()).process_group(0);
    c
}

/// Send `sig` to the process group led by `pid`. A group that no longer exists is not an error.
pub fn signal_group(pid: u32, sig: Signal) {
    match killpg(Pid::from_raw(pid as i32), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, signal = %sig, error = %e, "signalling a process group"),
    }
}

/// Whether any process of the group led by `pid` still exists.
pub fn group_alive(pid: u32) -> bool {
    killpg(Pid::from_raw(pid as i32), None::<Signal>).is_ok()
}

/// Stop children's process groups: SIGTERM to every group, then SIGKILL to whatever is left
/// after `grace`, and reap the children. A group is signalled even when its child has exited,
/// because what the child started in the background may still run. (Its id cannot have been
/// reused while any process of the group lives; once none does, the signal finds nothing.)
pub fn terminate_all(children: &mut [Child], grace: Duration) {
    for c in children.iter() {
        signal_group(c.id(), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let all_gone = children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(Some(_))) && !group_alive(c.id()));
        if all_gone {
            break;
        }
        std::thread::sleep(POLL);
    }
    for c in children.iter_mut() {
        signal_group(c.id(), Signal::SIGKILL);
        let _ = c.wait();
    }
    settle(children.iter().map(|c| c.id()));
}

/// The rest of a SIGKILLed group dies asynchronously (and lingers as zombies until init reaps
/// them): return once it is gone, so that "stopped" means stopped, but never wait long.
fn settle(pids: impl Iterator<Item = u32> + Clone) {
    let deadline = Instant::now() + KILL_SETTLE;
    while pids.clone().any(group_alive) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
}

/// Stop the process group led by `pid` when it is not our child (an earlier daemon run started
/// it): SIGTERM, SIGKILL after `grace` if any of it is left, then wait for it to be gone.
pub fn terminate_group(pid: u32, grace: Duration) {
    signal_group(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while group_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    signal_group(pid, Signal::SIGKILL);
    settle(std::iter::once(pid));
}

/// How long the processes of a SIGKILLed group may take to disappear.
const KILL_SETTLE: Duration = Duration::from_secs(3);

/// [`terminate_all`] for one child.
pub fn terminate(child: &mut Child, grace: Duration) {
    terminate_all(std::slice::from_mut(child), grace)
}

/// How [`run_until`] ended.
pub enum Finished {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// Run a command to its end, or until `deadline` or `cancelled`, which stop its process group.
pub fn run_until(
    cmd: &mut Command,
    deadline: Option<Instant>,
    cancelled: &AtomicBool,
) -> std::io::Result<Finished> {
    let mut child = cmd.spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Finished::Exited(status));
        }
        if cancelled.load(Ordering::SeqCst) {
            terminate(&mut child, TERM_GRACE);
            return Ok(Finished::Cancelled);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            terminate(&mut child, TERM_GRACE);
            return Ok(Finished::TimedOut);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_stdout_or_stderr() {
        assert_eq!(
            run(Command::new("sh").args(["-c", "echo hi"])).unwrap(),
            "hi"
        );
        let e = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        assert!(e.why.contains("oops"), "{e}");
        assert!(start_time(std::process::id()).is_some());
    }
}
