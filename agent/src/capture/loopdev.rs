//! Loop devices over the capture files, and the `/dev/rewind/GROUP/DISK` links to them.

use std::path::{Path, PathBuf};

use rewind_linux::loopdev;
use rewind_linux::process::CommandError;

use crate::error::{Error, Result};

/// An attached loop device; detached when dropped.
pub struct LoopDev {
    pub device: PathBuf,
    link: Option<PathBuf>,
}

fn command_error(e: CommandError) -> Error {
    Error::Command {
        command: e.command,
        why: e.why,
    }
}

impl LoopDev {
    /// `losetup --find --show --direct-io=on FILE` ([`loopdev::attach`]).
    pub fn attach(file: &Path) -> Result<LoopDev> {
        let dev = loopdev::attach(file, loopdev::Attach::default()).map_err(command_error)?;
        Ok(LoopDev {
            device: PathBuf::from(dev),
            link: None,
        })
    }

    /// Points `link` (its directory made if missing) at the device, replacing a stale link.
    pub fn link(&mut self, link: &Path) -> Result<()> {
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir)
                .map_err(Error::path("creating the links directory", dir))?;
        }
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::remove_file(link).map_err(Error::path("removing the stale link", link))?
            }
            Ok(_) => {
                return Err(Error::Config {
                    what: "--links-dir",
                    why: format!("{} exists and is not a symlink", link.display()),
                })
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&self.device, link)
            .map_err(Error::path("creating the device link", link))?;
        self.link = Some(link.to_path_buf());
        Ok(())
    }
}

impl Drop for LoopDev {
    /// Removes the link and detaches the device. A device still in use (mounted) is detached by
    /// the kernel when its last user closes it (losetup -d sets autoclear).
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            let _ = std::fs::remove_file(&link);
            if let Some(dir) = link.parent() {
                let _ = std::fs::remove_dir(dir); // only if empty
            }
        }
        if let Err(e) = loopdev::detach(&self.device) {
            tracing::warn!(device = %self.device.display(), error = %e, "detaching the loop device");
        }
    }
}
