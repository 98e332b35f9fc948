//! Replacing a file whole: write a temporary file beside it, fsync, rename it over the old one,
//! fsync the directory. A reader (or the next start after a crash) sees the old contents or the
//! new, never half of either.
//!
//! The temporary file is created fresh, never through a symlink: whatever sits at its name (a
//! leftover of a crash, a planted symlink) is removed first and the file is opened with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, which fails rather than follow or reuse anything put back in
//! between. Its mode is explicit, not left to the umask alone.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A step of [`write_with`] failed: `op` ("creating", "writing", ...) on `path`.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct Error {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn failed(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error { op, path, source }
}

/// How [`write_with`] writes.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Permission bits of the new file (the umask still applies).
    pub mode: u32,
    /// Sync file and directory, so the new contents survive a power cut once the call returns;
    /// false: they survive a process crash only.
    pub durable: bool,
    /// Name the temporary file for this call alone (`.NAME.PID.NANOS.tmp`), for files that
    /// several processes may replace at once; otherwise it is `NAME.tmp`, reused after a crash.
    pub unique_tmp: bool,
}

/// A private (0600) file, durable.
pub const PRIVATE: Options = Options {
    mode: 0o600,
    durable: true,
    unique_tmp: false,
};

/// Replace `path` with `bytes`: a private (0600) file, durable ([`PRIVATE`]).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_with(path, bytes, PRIVATE)
}

/// Replace `path` with `bytes` as `opts` says. On failure the temporary file is removed.
pub fn write_with(path: &Path, bytes: &[u8], opts: Options) -> Result<(), Error> {
    let tmp = tmp_path(path, opts.unique_tmp);
    let res = (|| {
        let mut f = create(&tmp, opts.mode).map_err(failed("creating", &tmp))?;
        f.write_all(bytes).map_err(failed("writing", &tmp))?;
        if opts.durable {
            f.sync_all().map_err(failed("syncing", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(failed("renaming into place", path))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    if opts.durable {
        let dir = parent_dir(path);
        sync_dir(dir).map_err(failed("syncing", dir))?;
    }
    Ok(())
}

/// The temporary name beside `path`.
fn tmp_path(path: &Path, unique: bool) -> PathBuf {
    if !unique {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        return PathBuf::from(tmp);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.{nanos}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// The directory holding `path`; a bare file name's parent is "" (the current directory).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// fsync a directory, so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create a new file at `path` with `mode` for writing, never through a symlink: whatever is at
/// `path` is removed first, then `O_CREAT|O_EXCL|O_NOFOLLOW` fails rather than follow or reuse
/// anything put back in between.
pub fn create(path: &Path, mode: u32) -> io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(mode)
        .open(path)
}

/// [`create`] with mode 0600.
pub fn create_private(path: &Path) -> io::Result<File> {
    create(path, 0o600)
}

/// Make `dir` 0700 if it is open to anybody else. Returns the mode it had when it was changed,
/// so the caller can say so in its own words.
pub fn make_private_dir(dir: &Path) -> io::Result<Option<u32>> {
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.acked");
        write(&p, b"1\n").unwrap();
        let quick = Options {
            durable: false,
            ..PRIVATE
        };
        write_with(&p, b"22\n", quick).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"22\n");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    /// A symlink planted at the temporary name is removed, not followed: its target is
    /// untouched, and the new file is a private regular file.
    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, dir.path().join("state.json.tmp")).unwrap();
        write(&p, b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let meta = fs::symlink_metadata(&p).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn unique_temporaries_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.crt");
        let opts = Options {
            mode: 0o644,
            durable: true,
            unique_tmp: true,
        };
        let tmp = tmp_path(&p, true);
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(".ca.crt.") && name.ends_with(".tmp"),
            "{name}"
        );
        write_with(&p, b"x", opts).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_replace_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let p = dir.path().join("d");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), b"").unwrap();
        let e = write(&p, b"x").unwrap_err();
        assert_eq!(e.op, "renaming into place");
        assert!(!dir.path().join("d.tmp").exists());
    }

    #[test]
    fn an_open_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(make_private_dir(dir.path()).unwrap(), Some(0o755));
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(make_private_dir(dir.path()).unwrap(), None);
    }
}
