//! The mount point: made ready before mounting (a dead tree left by a killed daemon is detached
//! lazily, a live FUSE mount refused).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rewind_linux::fuse_mount;

/// Make `root` a directory fit to mount on; returns its canonical path.
///
/// A daemon killed with its tree mounted leaves a dead FUSE mount there (statfs fails with
/// ENOTCONN; stat may still succeed for a second from the kernel's attribute cache): it is
/// detached lazily. A live FUSE mount is refused (another daemon serving a tree there).
pub fn prepare(root: &Path) -> Result<PathBuf> {
    fuse_mount::clear_dead(root, "view tree")
        .with_context(|| format!("unmounting the dead view tree at {}", root.display()))?;
    match fs::metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("view tree mount point {}", root.display()))
        }
        Ok(m) if !m.is_dir() => bail!(
            "view tree mount point {} is not a directory",
            root.display()
        ),
        Ok(_) => {}
    }
    fs::create_dir_all(root)
        .with_context(|| format!("creating view tree mount point {}", root.display()))?;
    let canonical = root
        .canonicalize()
        .with_context(|| format!("view tree mount point {}", root.display()))?;
    // Only a live FUSE mount is refused: a bind mount of the directory onto itself is what
    // systemd's sandbox makes of the unit's `ReadWritePaths=` and `RuntimeDirectory=`.
    let fuse = fuse_mount::fuse_mounted_at(&canonical).context("reading /proc/self/mountinfo")?;
    if let Some((fstype, source)) = fuse {
        bail!(
            "{} is already a mount point of a live FUSE file system ({fstype}, source {source}: \
             another rewind-mtd serving its view tree there?); unmount it or choose another \
             --views directory",
            canonical.display()
        );
    }
    Ok(canonical)
}
