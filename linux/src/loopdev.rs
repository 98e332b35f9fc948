//! Loop devices: `losetup` attach and detach, `partx` for partitions, and what sysfs says about
//! an attached device. Devices are named by their path (`/dev/loopN`) as `losetup` prints it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{run, CommandError};

/// How to attach a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attach {
    /// `--read-only`.
    pub read_only: bool,
    /// `--partscan`: the kernel scans the partition table (see [`partx_add`] for kernels whose
    /// scan finds nothing).
    pub partscan: bool,
}

/// `losetup --find --show --direct-io=on FILE` (with `how`'s flags); returns the device.
/// Direct-io mode lets the loop device send requests in parallel and keeps its page cache out
/// of the way.
pub fn attach(file: &Path, how: Attach) -> Result<String, CommandError> {
    let mut cmd = Command::new("losetup");
    cmd.args(["--find", "--show", "--direct-io=on"]);
    if how.read_only {
        cmd.arg("--read-only");
    }
    if how.partscan {
        cmd.arg("--partscan");
    }
    cmd.arg(file);
    let device = run(&mut cmd)?;
    if device.is_empty() {
        return Err(CommandError {
            command: format!("losetup --find --show {}", file.display()),
            why: "printed no device".into(),
        });
    }
    Ok(device)
}

/// `losetup -d DEVICE`. A device still open (mounted) is only marked: the kernel detaches it
/// at its last close (autoclear).
pub fn detach(device: impl AsRef<Path>) -> Result<(), CommandError> {
    run(Command::new("losetup").arg("-d").arg(device.as_ref())).map(drop)
}

/// `partx -a DEVICE`: add the partitions of the table on `device` with BLKPG. Kernels built
/// without partition-table parsers find nothing at `--partscan`; partx reads the table itself.
pub fn partx_add(device: &str) -> Result<(), CommandError> {
    run(Command::new("partx").arg("-a").arg(device)).map(drop)
}

/// `partx -d DEVICE`: partitions added with BLKPG are not always dropped with the device.
pub fn partx_delete(device: &str) -> Result<(), CommandError> {
    run(Command::new("partx").arg("-d").arg(device)).map(drop)
}

/// The kernel name of a device path (`loop3` for `/dev/loop3`).
fn kernel_name(device: &str) -> Option<&str> {
    Path::new(device).file_name()?.to_str()
}

/// The file a loop device is attached to, if any (an absolute path, as seen at attach time).
pub fn backing_file(device: &str) -> Option<PathBuf> {
    let name = kernel_name(device)?;
    let s = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim()))
}

/// The partition devices of `device`, sorted (they appear in sysfs right after a scan).
pub fn partition_devices(device: &str) -> Vec<String> {
    let Some(name) = kernel_name(device) else {
        return Vec::new();
    };
    let mut out: Vec<String> = std::fs::read_dir(format!("/sys/block/{name}"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(name) && n.len() > name.len())
        .map(|n| format!("/dev/{n}"))
        .collect();
    out.sort();
    out
}
