//! Small files in the state directory, replaced whole: written to a temporary file and renamed
//! over the old one, so a reader (or the next start after a crash) sees the old contents or the
//! new, never half of either.

use std::path::Path;

use rewind_linux::atomic;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes`, a 0600 file (`rewind_linux::atomic`). `durable`: the new
/// contents survive a power cut once this returns (file and directory fsynced); otherwise only a
/// process crash.
pub fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let opts = atomic::Options {
        durable,
        ..atomic::PRIVATE
    };
    atomic::write_with(path, bytes, opts).map_err(|e| Error::path(e.op, e.path)(e.source))
}

/// Make the state directory 0700 if anybody else may look in (it holds the spool: captured
/// writes in plain text), saying so.
pub fn make_private_dir(dir: &Path) -> Result<()> {
    let was = atomic::make_private_dir(dir).map_err(Error::path("chmod 0700", dir))?;
    if let Some(mode) = was {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the state directory was open to other users; making it 0700"
        );
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
