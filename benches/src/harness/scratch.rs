//! Scratch directories, and what a test needs of the machine it runs on.

use std::path::Path;
use std::process::Command;

/// A scratch directory under /var/tmp (a real filesystem: tmpfs has no O_DIRECT), removed on
/// drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rewind-test-")
        .tempdir_in("/var/tmp")
        .expect("temp dir")
}

/// A sparse image file of `bytes` bytes at `path`, for a test's disk.
pub fn sparse_image(path: &Path, bytes: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .unwrap_or_else(|e| panic!("creating the image {}: {e}", path.display()));
}

/// Whether `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the machine can run the agent's end-to-end tests: root, FUSE and the tools; says
/// (loudly) why not when it cannot, so that the caller skips.
pub fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let fuse = Path::new("/dev/fuse").exists();
    let tools = ["losetup", "mkfs.ext4", "e2fsck", "fsfreeze", "fio"]
        .iter()
        .all(|t| have_tool(t));
    if !(root && fuse && tools) {
        eprintln!(
            "SKIPPED: needs root ({root}), /dev/fuse ({fuse}) and losetup, mkfs.ext4, e2fsck, fsfreeze, fio ({tools})"
        );
        return false;
    }
    true
}

/// Whether `tools` are all on PATH. When not, says so loudly and returns false (skip), unless
/// `REWIND_REQUIRE_TOOLS` is set (scripts/test.sh sets it): then the test fails.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let what = format!(
        "{test} needs {} (scripts/test.sh installs them)",
        missing.join(", ")
    );
    assert!(std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(), "{what}");
    eprintln!("SKIPPED {what}");
    false
}
