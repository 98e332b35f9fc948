//! Freezing mounted filesystems (fsfreeze) around a tag, so the tag is app-consistent: the
//! filesystem has flushed and blocks new writes while the tag is inserted.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

fn fsfreeze(flag: &str, mp: &Path) -> Result<()> {
    let command = format!("fsfreeze {flag} {}", mp.display());
    let out = Command::new("fsfreeze")
        .arg(flag)
        .arg(mp)
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Freezes `mountpoints` in order. Returns those frozen (to hand to [`thaw`] whatever happens)
/// and the first failure, after which the rest are not tried.
pub fn freeze(mountpoints: &[PathBuf]) -> (Vec<PathBuf>, Result<()>) {
    let mut frozen = Vec::new();
    for mp in mountpoints {
        if let Err(e) = fsfreeze("-f", mp) {
            return (frozen, Err(e));
        }
        frozen.push(mp.clone());
    }
    (frozen, Ok(()))
}

/// Thaws what was frozen, in reverse order. Tries every one (a filesystem left frozen stalls
/// its applications), logs each failure and returns the first.
pub fn thaw(frozen: &[PathBuf]) -> Result<()> {
    let mut first = Ok(());
    for mp in frozen.iter().rev() {
        if let Err(e) = fsfreeze("-u", mp) {
            tracing::error!(mountpoint = %mp.display(), error = %e, "thaw failed");
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}
