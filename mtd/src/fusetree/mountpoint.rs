//! The mount point: made ready before mounting (a dead tree left by a killed daemon is detached),
//! and unmounted at the end.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};

/// Make `root` a directory fit to mount on; returns its canonical path.
///
/// A daemon killed with its tree mounted leaves a dead FUSE mount there (stat fails with
/// ENOTCONN): it is detached lazily. A live mount is refused (another daemon serving a tree
/// there, or something else the tree would hide).
pub fn prepare(root: &Path) -> Result<PathBuf> {
    // Mounts may be stacked if daemons were killed more than once.
    for _ in 0..16 {
        match fs::metadata(root) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                tracing::info!(
                    root = %root.display(),
                    "view tree: a dead FUSE mount (left by a daemon that was killed) is in the way; unmounting it lazily"
                );
                umount2(root, MntFlags::MNT_DETACH).with_context(|| {
                    format!("unmounting the dead view tree at {}", root.display())
                })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => {
                return Err(e).with_context(|| format!("view tree mount point {}", root.display()))
            }
            Ok(m) if !m.is_dir() => bail!(
                "view tree mount point {} is not a directory",
                root.display()
            ),
            Ok(_) => break,
        }
    }
    fs::create_dir_all(root)
        .with_context(|| format!("creating view tree mount point {}", root.display()))?;
    let canonical = root
        .canonicalize()
        .with_context(|| format!("view tree mount point {}", root.display()))?;
    if mount_points()?.contains(&canonical) {
        bail!(
            "{} is already a mount point (another rewind-mtd serving its view tree there?); \
             unmount it or choose another --views directory",
            canonical.display()
        );
    }
    Ok(canonical)
}

/// Every mount point of this mount namespace.
fn mount_points() -> Result<Vec<PathBuf>> {
    let text = fs::read("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|p| PathBuf::from(OsString::from_vec(unescape(p))))
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 4 <= s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = s[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Detach `root` lazily: it goes away once its last user (an open file, a loop device) is gone.
pub fn detach(root: &Path) -> nix::Result<()> {
    umount2(root, MntFlags::MNT_DETACH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(br"/var/tmp/a\040b"), b"/var/tmp/a b".to_vec());
        assert_eq!(unescape(br"/x\134y"), b"/x\\y".to_vec());
        assert_eq!(unescape(br"/plain"), b"/plain".to_vec());
        assert_eq!(unescape(br"/end\04"), b"/end\\04".to_vec());
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(mount_points().unwrap().contains(&PathBuf::from("/")));
    }
}
