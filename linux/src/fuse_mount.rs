//! FUSE mount points: the dead mount a killed server leaves behind, lazy detach, and whether a
//! path is a mount point.
//!
//! A FUSE server killed with its file system mounted leaves a dead mount: every stat of it fails
//! with ENOTCONN, and mounting again on top would stack another. Both the agent's capture mount
//! and the target's view tree clear it before mounting.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// Detach `dir` lazily: it goes away once its last user (an open file, a loop device) is gone.
pub fn detach(dir: &Path) -> nix::Result<()> {
    umount2(dir, MntFlags::MNT_DETACH)
}

/// Whether `dir` is a dead FUSE mount (stat fails with ENOTCONN).
pub fn is_dead(dir: &Path) -> bool {
    matches!(std::fs::metadata(dir), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

/// Detach every dead FUSE mount stacked at `dir` (a server killed more than once leaves one per
/// kill; at most 16 are cleared). `what` names the mount in the log.
pub fn clear_dead(dir: &Path, what: &str) -> nix::Result<()> {
    for _ in 0..16 {
        if !is_dead(dir) {
            break;
        }
        tracing::info!(
            dir = %dir.display(),
            "{what}: a dead FUSE mount (left by a server that was killed) is in the way; detaching it lazily"
        );
        detach(dir)?;
    }
    Ok(())
}

/// Every mount point of this mount namespace.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read("/proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|p| PathBuf::from(OsString::from_vec(unescape(p))))
        .collect())
}

/// Whether `dir` (a canonical path) is a mount point.
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    Ok(mount_points()?.iter().any(|m| m == dir))
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
        assert!(is_mount_point(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_dead(dir.path()));
        clear_dead(dir.path(), "test").unwrap();
    }
}
