//! Running a command to completion: [`run`] returns whatever happened (for tests of failures),
//! [`run_ok`] insists on success. Either gives up on a command that hangs: it is killed (its
//! whole process group) after [`timeout`], and the test fails naming it, rather than a suite
//! that never ends.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one command may run: 600 s, or `REWIND_CMD_TIMEOUT_SECS`.
pub fn timeout() -> Duration {
    let secs = std::env::var("REWIND_CMD_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// Runs a command to completion (stdin from /dev/null), returning its output; panics if it
/// cannot start or outlives [`timeout`].
pub fn run(cmd: &mut Command) -> Output {
    run_within(cmd, timeout())
}

/// [`run`] with its own time limit.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    // Both pipes are drained while the command runs, so a chatty one never blocks on them.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for a command") {
            break st;
        }
        if start.elapsed() > limit {
            // The group, not just the child: a hung tool may be waiting on a helper of its own.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            let (out, err) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{cmd:?} still ran after {limit:?}; killed it.\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// [`run`], asserting the command succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert_ok(&out, &format!("{cmd:?}"));
    out
}

/// Asserts `out` is a success; shows `what` and the output otherwise.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_status_come_back() {
        let out = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_hung_command_and_its_children_are_killed() {
        let pidfile = std::env::temp_dir().join(format!("rewind-cmd-{}", std::process::id()));
        let script = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| {
            run_within(
                Command::new("sh").args(["-c", &script]),
                Duration::from_millis(300),
            )
        });
        let msg = *r
            .expect_err("the command must time out")
            .downcast::<String>()
            .unwrap();
        assert!(msg.contains("still ran after"), "{msg}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&pidfile);
        // The grandchild went with the group (a zombie until init reaps it counts as gone).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
    }
}
