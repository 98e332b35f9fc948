//! Loop devices a test attaches (detached on drop), and those a process it killed left behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cmd::run;

/// A loop device (`/dev/loopN`), detached when dropped.
pub struct Loop(pub String);

impl Loop {
    /// `losetup --find --show --direct-io=on EXTRA FILE`. Other tests attach loop devices at the
    /// same time, and two `--find`s may pick the same free device: retried.
    pub fn attach(file: &Path, extra: &[&str]) -> Loop {
        let mut last = String::new();
        for _ in 0..10 {
            let out = run(Command::new("losetup")
                .args(["--find", "--show", "--direct-io=on"])
                .args(extra)
                .arg(file));
            if out.status.success() {
                return Loop(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("losetup {extra:?} {}: {last}", file.display());
    }

    pub fn path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

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
