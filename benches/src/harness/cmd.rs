//! Running a command to completion: [`run`] returns whatever happened (for tests of failures),
//! [`run_ok`] insists on success.

use std::process::{Command, Output, Stdio};

/// Runs a command to completion (stdin from /dev/null), returning its output; panics only if it
/// cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
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
