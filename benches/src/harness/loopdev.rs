//! Loop devices a test (or a process it killed) left attached.

use std::path::Path;
use std::process::Command;

/// Detaches loop device `dev` if it is still attached to a file under `dir` (`losetup DEV`
/// names its backing file): a loop device number freed and reused by someone else is left alone.
pub fn detach_if_backed_under(dev: &Path, dir: &Path) {
    let still = Command::new("losetup").arg(dev).output().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&*dir.to_string_lossy())
    });
    if still {
        let _ = Command::new("losetup").arg("-d").arg(dev).status();
    }
}
