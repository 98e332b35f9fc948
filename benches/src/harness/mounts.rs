//! Mounted filesystems, unmounted even when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cmd::run_ok;

/// `umount -l`: detaches a mount even when busy or its FUSE server is dead; quiet when `at` is
/// not mounted.
pub fn umount_lazy(at: &Path) {
    let _ = Command::new("umount")
        .arg("-l")
        .arg(at)
        .stderr(Stdio::null())
        .status();
}

/// `umount`, and `umount -l` when that fails (busy): a failed test must not leave a mount.
pub fn umount_or_lazy(at: &Path) {
    let ok = Command::new("umount")
        .arg(at)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(at).status();
    }
}

/// A mounted filesystem, unmounted on drop.
pub struct Mount(pub Option<PathBuf>);

impl Mount {
    pub fn new(dev: &Path, at: &Path) -> Mount {
        fs::create_dir_all(at).expect("mount point");
        run_ok(Command::new("mount").arg(dev).arg(at));
        Mount(Some(at.to_path_buf()))
    }

    pub fn umount(&mut self) {
        if let Some(p) = self.0.take() {
            run_ok(Command::new("umount").arg(&p));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // A frozen filesystem cannot be unmounted: thaw first (harmless if not frozen).
            let _ = Command::new("fsfreeze")
                .arg("-u")
                .arg(&p)
                .stderr(Stdio::null())
                .status();
            umount_or_lazy(&p);
        }
    }
}
