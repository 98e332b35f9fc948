//! Small files in the state directory, replaced whole: written to a temporary file and renamed
//! over the old one, so a reader (or the next start after a crash) sees the old contents or the
//! new, never half of either.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// A group's file in the state directory: `STATE_DIR/GROUP.EXT` (`dirty`, `spool`, `window`,
/// `acked`, `fenced`).
pub fn group_file(state_dir: &Path, group: &str, ext: &str) -> std::path::PathBuf {
    state_dir.join(format!("{group}.{ext}"))
}

/// Replaces `path` with `bytes`. `durable`: the new contents survive a power cut once this
/// returns (file and directory fsynced); otherwise only a process crash.
pub fn replace(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut f = File::create(tmp).map_err(Error::path("creating", tmp))?;
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
}
