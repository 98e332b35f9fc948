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

/// Whether `dir` is a dead FUSE mount: statfs (or stat) fails with ENOTCONN.
///
/// stat alone is not enough: the kernel answers it from the attributes it cached for the root
/// (for the attribute TTL the server gave, a second in the view tree), even once the
/// connection is gone. A daemon restarted within that second of being killed saw a live mount
/// and refused to start. statfs is never cached: it always asks the server, and a dead
/// connection fails it at once.
pub fn is_dead(dir: &Path) -> bool {
    let enotconn = |e: nix::Error| e == nix::Error::ENOTCONN;
    nix::sys::statfs::statfs(dir).is_err_and(enotconn)
        || matches!(std::fs::metadata(dir), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
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

/// The file system type and source of the FUSE mount on top at `dir` (a canonical path), if
/// the mount on top there is a FUSE one (`fuse`, `fuse.NAME`, `fuseblk`).
///
/// Only a FUSE mount means a server is serving there. Other mounts at a path are normal: a
/// service manager's sandbox bind-mounts a directory onto itself to make it writable under a
/// read-only /usr (systemd's `ReadWritePaths=`, `RuntimeDirectory=` with `ProtectSystem=`).
pub fn fuse_mounted_at(dir: &Path) -> io::Result<Option<(String, String)>> {
    let text = std::fs::read("/proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = String::from_utf8_lossy(line);
            let (head, tail) = line.split_once(" - ")?;
            let point = head.split(' ').nth(4)?;
            let mut tail = tail.split(' ');
            let (fstype, source) = (tail.next()?, tail.next().unwrap_or(""));
            (Path::new(&OsString::from_vec(unescape(point.as_bytes()))) == dir)
                .then(|| (fstype.to_string(), source.to_string()))
        })
        // mountinfo lists mounts in the order they were made: the last at a path is on top.
        .next_back()
        .filter(|(fstype, _)| fstype.starts_with("fuse")))
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
    fn a_bind_mount_is_not_a_fuse_mount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: bind mounts need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        assert_eq!(fuse_mounted_at(&canonical).unwrap(), None);
        // What systemd's ReadWritePaths= does to a directory: a bind mount onto itself.
        nix::mount::mount(
            Some(&canonical),
            &canonical,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let mounted = is_mount_point(&canonical).unwrap();
        let fuse = fuse_mounted_at(&canonical).unwrap();
        detach(&canonical).unwrap();
        assert!(mounted, "the bind mount is a mount point");
        assert_eq!(fuse, None, "but not a FUSE one");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_dead(dir.path()));
        clear_dead(dir.path(), "test").unwrap();
    }

    /// A FUSE mount whose server answered just enough for the kernel to cache the root's
    /// attributes for an hour, then closed /dev/fuse, as a server killed with kill -9 does.
    /// Detached when dropped (even if the test fails).
    struct Abandoned(tempfile::TempDir);

    impl Drop for Abandoned {
        fn drop(&mut self) {
            while is_mount_point(&self.0.path().canonicalize().unwrap()).unwrap_or(false) {
                if detach(self.0.path()).is_err() {
                    break;
                }
            }
        }
    }

    const FUSE_GETATTR: u32 = 3;
    const FUSE_INIT: u32 = 26;
    const FUSE_FORGET: u32 = 2;
    const FUSE_BATCH_FORGET: u32 = 42;

    /// A reply: fuse_out_header (len, error, unique) and `body`.
    fn reply(unique: u64, error: i32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&(16 + body.len() as u32).to_le_bytes());
        m.extend_from_slice(&error.to_le_bytes());
        m.extend_from_slice(&unique.to_le_bytes());
        m.extend_from_slice(body);
        m
    }

    /// fuse_attr_out for the root: an hour of attribute validity, a 0755 directory.
    fn root_attr_out() -> Vec<u8> {
        let mut b = Vec::with_capacity(104);
        b.extend_from_slice(&3600u64.to_le_bytes()); // attr_valid
        b.extend_from_slice(&[0; 8]); // attr_valid_nsec, dummy
        b.extend_from_slice(&1u64.to_le_bytes()); // ino
        b.extend_from_slice(&[0; 8 * 5 + 4 * 3]); // size, blocks, [amc]time, [amc]timensec
        for v in [0o40755u32, 2, 0, 0, 0, 4096, 0] {
            // mode, nlink, uid, gid, rdev, blksize, flags
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Mount a FUSE file system served by hand on this thread's helper until the kernel has
    /// the root's attributes, then abandon it.
    fn abandoned_mount() -> Abandoned {
        use nix::mount::{mount, MsFlags};
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;

        let dir = tempfile::tempdir().unwrap();
        let mut dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("/dev/fuse");
        let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
        mount(
            Some("rewind-test"),
            dir.path(),
            Some("fuse"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .expect("mounting a FUSE file system");
        let mounted = Abandoned(dir);
        let server = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = dev.read(&mut buf).expect("reading /dev/fuse");
                assert!(n >= 40, "short FUSE request ({n} bytes)");
                let opcode = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                let unique = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                let msg = match opcode {
                    FUSE_INIT => {
                        let mut init = vec![0u8; 64]; // fuse_init_out
                        init[0..4].copy_from_slice(&7u32.to_le_bytes());
                        init[4..8].copy_from_slice(&31u32.to_le_bytes());
                        init[20..24].copy_from_slice(&4096u32.to_le_bytes()); // max_write
                        init[24..28].copy_from_slice(&1u32.to_le_bytes()); // time_gran
                        reply(unique, 0, &init)
                    }
                    FUSE_GETATTR => reply(unique, 0, &root_attr_out()),
                    FUSE_FORGET | FUSE_BATCH_FORGET => continue,
                    _ => reply(unique, -libc::ENOSYS, &[]),
                };
                assert_eq!(dev.write(&msg).expect("replying on /dev/fuse"), msg.len());
                if opcode == FUSE_GETATTR {
                    // Closing the only /dev/fuse descriptor aborts the connection.
                    return;
                }
            }
        });
        std::fs::metadata(mounted.0.path()).expect("the root's attributes");
        server.join().unwrap();
        mounted
    }

    /// The kernel keeps answering stat of a dead mount's root from its attribute cache; a
    /// restart within the TTL of a kill must still see the mount as dead and clear it.
    #[test]
    fn dead_mount_with_cached_root_attributes_is_dead() {
        let ok = nix::unistd::geteuid().is_root() && Path::new("/dev/fuse").exists();
        if !ok {
            assert!(
                std::env::var_os("REWIND_REQUIRE_TOOLS").is_none(),
                "this test needs root and /dev/fuse"
            );
            eprintln!("SKIPPED: this test needs root and /dev/fuse");
            return;
        }
        let m = abandoned_mount();
        let dir = m.0.path().to_path_buf();
        let canonical = dir.canonicalize().unwrap();
        assert!(is_mount_point(&canonical).unwrap());
        assert!(is_dead(&dir), "a mount with no server left is dead");
        clear_dead(&dir, "test").unwrap();
        assert!(!is_mount_point(&canonical).unwrap(), "cleared");
        assert!(!is_dead(&dir));
    }
}
