//! Loop devices over the view tree's files, and filesystems mounted from them.
//!
//! `rewind attach` puts a loop device over `GROUP/DISK/.../X.img`; `rewind mount` adds a throwaway
//! overlay (so ext4/xfs can replay their journals without changing the point) and mounts it. The
//! daemon keeps the list in `DATA_DIR/attachments.json` so that after a crash the next start can
//! detach what the dead FUSE tree left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fusetree::export_path;
use crate::views::exports::{ExportName, Exports, Target};
use rewind_linux::clock::now_ms;
use rewind_linux::loopdev::{self, backing_file, partition_devices};
use rewind_linux::process::run;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    /// `/dev/loopN`.
    pub device: String,
    /// What it shows: an export name.
    pub export: String,
    /// The view-tree file under the loop device.
    pub file: PathBuf,
    pub writable: bool,
    /// Partition devices (`/dev/loopNp1` ...), when attached with partition scanning.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// The throwaway overlay made for this attachment, dropped with it.
    #[serde(default)]
    pub overlay: Option<String>,
    /// Where `rewind mount` mounted it.
    #[serde(default)]
    pub mountpoint: Option<PathBuf>,
    pub created_ms: u64,
}

pub struct Attachments {
    file: PathBuf,
    list: Mutex<Vec<Attachment>>,
}

impl Attachments {
    /// Load the list, and clean up what a previous daemon left (its view tree is gone, so its
    /// loop devices and mounts are dead).
    pub fn load(data_dir: &Path) -> Result<Attachments> {
        let file = data_dir.join("attachments.json");
        let old: Vec<Attachment> = match std::fs::read(&file) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("reading {}", file.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        for a in &old {
            tracing::warn!(device = %a.device, export = %a.export, "cleaning up an attachment left by a previous run");
            if let Some(m) = &a.mountpoint {
                let _ = run(Command::new("umount").arg("-l").arg(m));
            }
            if backs(&a.device, &a.file) {
                let _ = loopdev::detach(&a.device);
            }
        }
        let me = Attachments {
            file,
            list: Mutex::new(Vec::new()),
        };
        me.save(&[])?;
        Ok(me)
    }

    fn save(&self, list: &[Attachment]) -> Result<()> {
        let json = serde_json::to_vec_pretty(list)?;
        crate::store::files::write_atomic(&self.file, &json)?;
        Ok(())
    }

    pub fn list(&self) -> Vec<Attachment> {
        self.list.lock().expect("attachments lock").clone()
    }

    fn add(&self, a: Attachment) -> Result<()> {
        let mut l = self.list.lock().expect("attachments lock");
        l.push(a);
        self.save(&l)
    }

    fn remove(&self, device: &str) -> Result<Option<Attachment>> {
        let mut l = self.list.lock().expect("attachments lock");
        let Some(i) = l.iter().position(|a| a.device == device) else {
            return Ok(None);
        };
        let a = l.remove(i);
        self.save(&l)?;
        Ok(Some(a))
    }

    fn find_mount(&self, dir: &Path) -> Option<Attachment> {
        self.list
            .lock()
            .expect("attachments lock")
            .iter()
            .find(|a| a.mountpoint.as_deref() == Some(dir))
            .cloned()
    }
}

/// A throwaway overlay's name: unique, and recognisable in `rewind overlay list`.
fn throwaway_name(kind: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{kind}-{}-{n}", now_ms())
}

/// Attach a loop device to an export's view-tree file. `writable` on anything but an overlay
/// makes a throwaway overlay over the point first.
pub fn attach(
    exports: &Exports,
    views: &Path,
    atts: &Attachments,
    export: &str,
    writable: bool,
    partitions: bool,
    mountpoint: Option<PathBuf>,
) -> Result<Attachment> {
    let mut name = ExportName::parse(export)?;
    // The names become a path under the view tree.
    crate::names::check_export(&name)?;
    let mut overlay = None;
    let is_overlay = matches!(name.target, Target::Overlay(_));
    if writable && !is_overlay {
        let point = match &name.target {
            Target::Point(p) => p.clone(),
            _ => "latest".to_string(),
        };
        let oname = throwaway_name(if mountpoint.is_some() {
            "mount"
        } else {
            "attach"
        });
        exports
            .overlays
            .create(&oname, &name.group, &name.disk, &point, true)?;
        name.target = Target::Overlay(oname.clone());
        overlay = Some(oname);
    } else {
        // Resolve now, so a bad name or a too-old point is a clear error rather than a losetup
        // failure on a missing file.
        exports.open_parsed(&name)?;
    }
    let writable = writable || is_overlay;
    let file = export_path(views, &name);
    let result = (|| {
        let how = loopdev::Attach {
            read_only: !writable,
            partscan: partitions,
        };
        let device = loopdev::attach(&file, how)?;
        let parts = if partitions {
            let mut parts = partition_devices(&device);
            if parts.is_empty() {
                // Kernels built without partition-table parsers (this one: no MSDOS/EFI
                // partition support) find nothing at the scan; partx reads the table itself and
                // adds the partitions with BLKPG.
                if let Err(e) = loopdev::partx_add(&device) {
                    tracing::debug!(device = %device, error = %e, "partx found no partitions");
                }
                parts = partition_devices(&device);
            }
            parts
        } else {
            Vec::new()
        };
        Ok::<_, anyhow::Error>((device, parts))
    })();
    let (device, parts) = match result {
        Ok(x) => x,
        Err(e) => {
            if let Some(o) = &overlay {
                drop_overlay(exports, o);
            }
            return Err(e);
        }
    };
    let a = Attachment {
        device,
        export: name.to_string(),
        file,
        writable,
        partitions: parts,
        overlay,
        mountpoint,
        created_ms: now_ms(),
    };
    atts.add(a.clone())?;
    tracing::info!(device = %a.device, export = %a.export, writable, "attached loop device");
    Ok(a)
}

/// Detach a loop device this daemon attached, and drop its throwaway overlay.
pub fn detach(exports: &Exports, atts: &Attachments, device: &str) -> Result<Attachment> {
    let a = atts
        .list()
        .into_iter()
        .find(|a| a.device == device)
        .with_context(|| {
            format!("{device} was not attached by rewind (see `rewind attachments`)")
        })?;
    if let Some(m) = &a.mountpoint {
        bail!(
            "{device} is mounted at {}; use `rewind umount {}`",
            m.display(),
            m.display()
        );
    }
    release(exports, atts, &a)?;
    Ok(a)
}

fn release(exports: &Exports, atts: &Attachments, a: &Attachment) -> Result<()> {
    if let Some(m) = &a.mountpoint {
        run(Command::new("umount").arg(m))
            .with_context(|| format!("unmounting {}", m.display()))?;
    }
    let detached = backs(&a.device, &a.file);
    if detached {
        if !a.partitions.is_empty() {
            // Partitions added with BLKPG are not always dropped with the device.
            let _ = loopdev::partx_delete(&a.device);
        }
        loopdev::detach(&a.device)?;
        wait_detached(&a.device, &a.file, DETACH_WAIT)?;
    }
    atts.remove(&a.device)?;
    if let Some(o) = &a.overlay {
        drop_overlay(exports, o);
    }
    if detached {
        tracing::info!(device = %a.device, export = %a.export, "detached loop device");
    } else {
        tracing::warn!(
            device = %a.device,
            export = %a.export,
            file = %a.file.display(),
            now = ?backing_file(&a.device),
            "loop device was no longer attached to this file (detached by someone else?); nothing to detach"
        );
    }
    Ok(())
}

/// How long a detached loop device may stay bound while its last users close it.
const DETACH_WAIT: Duration = Duration::from_secs(10);

/// Whether loop `device` is attached to `file`. The kernel reports the backing file by its
/// absolute path as seen at attach time; `file` may be spelled differently (relative, through a
/// symlink), so a path that differs is compared by device and inode too.
fn backs(device: &str, file: &Path) -> bool {
    let Some(back) = backing_file(device) else {
        return false;
    };
    if back == file || std::path::absolute(file).is_ok_and(|f| f == back) {
        return true;
    }
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(&back), std::fs::metadata(file)) {
        (Ok(b), Ok(f)) => b.dev() == f.dev() && b.ino() == f.ino(),
        _ => false,
    }
}

/// After `losetup -d`: the kernel only marks a device that is still open for clearing and
/// detaches it at the last close, so `losetup -d` succeeding does not mean it is gone. Wait up
/// to `limit` for that; if it is still attached then, say what holds it.
fn wait_detached(device: &str, file: &Path, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    while backs(device, file) {
        if t0.elapsed() >= limit {
            bail!(
                "loop device {device} is still attached to {} {limit:?} after `losetup -d`: {}",
                file.display(),
                holders(device)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What keeps a loop device open: mounts of it or its partitions, devices stacked on it, and
/// processes with it open.
fn holders(device: &str) -> String {
    let name = Path::new(device)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut what = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for l in mounts.lines() {
        let mut f = l.split_whitespace();
        if let (Some(src), Some(at)) = (f.next(), f.next()) {
            if src == device || src.strip_prefix(device).is_some_and(|r| r.starts_with('p')) {
                what.push(format!("{src} is mounted at {at}"));
            }
        }
    }
    for e in std::fs::read_dir(format!("/sys/block/{name}/holders"))
        .into_iter()
        .flatten()
        .flatten()
    {
        what.push(format!(
            "/dev/{} is stacked on it",
            e.file_name().to_string_lossy()
        ));
    }
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let open = std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| {
                    let t = t.to_string_lossy();
                    t == device || t.strip_prefix(device).is_some_and(|r| r.starts_with('p'))
                })
            });
        if open {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            what.push(format!("open by pid {pid} ({})", comm.trim()));
        }
    }
    if what.is_empty() {
        "nothing visible holds it (no mount, holder or open file)".to_string()
    } else {
        format!("held: {}", what.join("; "))
    }
}

/// Delete a throwaway overlay. The loop device closes its file asynchronously (FUSE release
/// arrives after losetup returns), so wait a little for the last user to go.
pub(crate) fn drop_overlay(exports: &Exports, name: &str) {
    let t0 = Instant::now();
    loop {
        match exports.overlays.delete(name) {
            Ok(()) => return,
            Err(e) if t0.elapsed() < Duration::from_secs(10) => {
                tracing::debug!(overlay = name, error = %e, "waiting to delete throwaway overlay");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::error!(overlay = name, error = %e, "cannot delete throwaway overlay");
                return;
            }
        }
    }
}

/// The safe defaults of `rewind mount`: a replica's filesystem comes from the protected machine,
/// whose set-uid programs and device nodes must not work here.
pub const SAFE_MOUNT_OPTIONS: &str = "nosuid,nodev,noexec";

/// The `-o` of a `rewind mount`: the safe defaults first, then the caller's options, which
/// mount(8) applies after them (so `exec`, `suid` or `dev` relax a default explicitly).
pub fn mount_options(user: Option<&str>) -> String {
    match user.map(str::trim).filter(|o| !o.is_empty()) {
        Some(o) => format!("{SAFE_MOUNT_OPTIONS},{o}"),
        None => SAFE_MOUNT_OPTIONS.to_string(),
    }
}

/// Mount an export at `dir` through a throwaway overlay (the point itself never changes).
pub fn mount(
    exports: &Exports,
    views: &Path,
    atts: &Attachments,
    export: &str,
    dir: &Path,
    partition: Option<u32>,
    options: Option<&str>,
) -> Result<Attachment> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("mount point {}", dir.display()))?;
    if !dir.is_dir() {
        bail!("mount point {} is not a directory", dir.display());
    }
    if atts.find_mount(&dir).is_some() {
        bail!("{} already has a rewind mount", dir.display());
    }
    let a = attach(
        exports,
        views,
        atts,
        export,
        true,
        partition.is_some(),
        Some(dir.clone()),
    )?;
    let dev = match partition {
        None => a.device.clone(),
        Some(n) => {
            let want = format!("{}p{n}", a.device);
            if !a.partitions.contains(&want) {
                let found = a.partitions.join(", ");
                let mut b = a.clone();
                b.mountpoint = None;
                let _ = release(exports, atts, &b);
                bail!(
                    "{export} has no partition {n} (found: {})",
                    if found.is_empty() { "none" } else { &found }
                );
            }
            want
        }
    };
    let mut cmd = Command::new("mount");
    cmd.args(["-o", &mount_options(options)]);
    cmd.arg(&dev).arg(&dir);
    if let Err(e) = run(&mut cmd) {
        let mut b = a.clone();
        b.mountpoint = None;
        let _ = release(exports, atts, &b);
        bail!("cannot mount {export} (is there a filesystem on it? try --partition N): {e}");
    }
    tracing::info!(export, dir = %dir.display(), device = %dev, "mounted");
    Ok(a)
}

/// Unmount a `rewind mount`, detach its loop device and drop its overlay.
pub fn umount(exports: &Exports, atts: &Attachments, dir: &Path) -> Result<Attachment> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let a = atts
        .find_mount(&dir)
        .with_context(|| format!("{} is not a rewind mount", dir.display()))?;
    release(exports, atts, &a)?;
    Ok(a)
}

/// Release everything (daemon shutdown), newest first.
pub fn release_all(exports: &Exports, atts: &Attachments) {
    let mut l = atts.list();
    l.reverse();
    for a in l {
        if let Err(e) = release(exports, atts, &a) {
            tracing::error!(device = %a.device, error = %e, "cannot release attachment; trying a lazy unmount");
            if let Some(m) = &a.mountpoint {
                let _ = run(Command::new("umount").arg("-l").arg(m));
            }
            let _ = loopdev::detach(&a.device);
            let _ = atts.remove(&a.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_nosuid_nodev_noexec_unless_relaxed() {
        assert_eq!(mount_options(None), "nosuid,nodev,noexec");
        assert_eq!(mount_options(Some(" ")), "nosuid,nodev,noexec");
        // The caller's options come last: mount(8) lets them override the defaults.
        assert_eq!(
            mount_options(Some("ro,exec")),
            "nosuid,nodev,noexec,ro,exec"
        );
    }
}
