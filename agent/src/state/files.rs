//! Small files in the state directory, replaced whole: written to a temporary file and renamed
//! over the old one, so a reader (or the next start after a crash) sees the old contents or the
//! new, never half of either.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes`. `durable`: the new contents survive a power cut once this
/// returns (file and directory fsynced); otherwise only a process crash.
pub fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut f = create_private(tmp).map_err(Error::path("creating", tmp))?;
    f.write_all(bytes).map_err(Error::path("writing", tmp))?;
    if durable {
        f.sync_all().map_err(Error::path("syncing", tmp))?;
    }
    std::fs::rename(tmp, path).map_err(Error::path("renaming into place", path))?;
    if durable {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::path("syncing", dir))?;
    }
    Ok(())
}

/// Create a new 0600 file at `path`, never through a symlink: whatever is at `path` (a stale
/// temporary file, a planted symlink) is removed first, then `O_CREAT|O_EXCL|O_NOFOLLOW` fails
/// rather than follow or reuse anything put back in between. Explicit, not left to the umask:
/// this library also runs inside rewind-mtd (reverse replication).
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
}

/// Make the state directory 0700 if anybody else may look in (it holds the spool: captured
/// writes in plain text), saying so.
pub fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dir).map_err(Error::path("reading the mode of", dir))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the state directory was open to other users; making it 0700"
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(Error::path("chmod 0700", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.acked");
        replace(&p, b"1\n", true).unwrap();
        replace(&p, b"22\n", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"22\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    /// A symlink planted at the temporary name is removed, not followed: its target is untouched,
    /// and the state file is a private regular file.
    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join("g.acked");
        std::os::unix::fs::symlink(&victim, dir.path().join("g.acked.tmp")).unwrap();
        replace(&p, b"7\n", true).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"7\n");
    }

    #[test]
    fn an_open_state_dir_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
