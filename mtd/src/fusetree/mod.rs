//! The FUSE view tree: `GROUP/DISK/latest.img`, `GROUP/DISK/at/POINT.img`,
//! `GROUP/DISK/overlays/NAME.img`, served from the same `Volume` read path as NBD.
//!
//! Image files are opened in direct-IO mode with async direct IO and 1 MiB requests, so a loop
//! device attached over one (`losetup --direct-io=on`) runs its requests in parallel on fuser's
//! threads.

mod catalog;
mod errno;
mod fs;
mod handles;
mod inodes;
mod mountpoint;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::views::exports::{ExportName, Exports, Target};

/// fuser threads serving requests; they block on store IO, so more than the cores.
const THREADS: usize = 8;
/// How long to wait for the serving threads after the unmount.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A mounted view tree; unmounted when dropped.
pub struct FuseTree {
    root: PathBuf,
    /// What is mounted (`root` made absolute).
    mounted: PathBuf,
    unmounter: Option<SessionUnmounter>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FuseTree {
    /// Mount the tree at `root` (made if missing). Blocks until the kernel has initialised it.
    /// `gid`: the access group; it (and root) may read the tree, nobody else.
    pub fn mount(exports: Arc<Exports>, root: &Path, gid: u32) -> Result<FuseTree> {
        let mounted = mountpoint::prepare(root)?;
        let fs = fs::TreeFs::new(catalog::Catalog::new(exports), gid);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("rewind".into()),
            // The kernel checks the modes and the group the tree shows: without this option,
            // allow_other would let every local user read replicas.
            MountOption::DefaultPermissions,
            MountOption::NoExec,
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        config.acl = SessionACL::All;
        config.n_threads = Some(THREADS);
        config.clone_fd = true;
        let mut session = Session::new(fs, &mounted, &config)
            .with_context(|| format!("mounting the view tree at {}", mounted.display()))?;
        let unmounter = session.unmount_callable();
        let thread = std::thread::Builder::new()
            .name("fuse-views".into())
            .spawn(move || session.run())
            .context("starting the view tree's threads")?;
        tracing::info!(root = %mounted.display(), threads = THREADS, "view tree mounted");
        Ok(FuseTree {
            root: root.to_path_buf(),
            mounted,
            unmounter: Some(unmounter),
            thread: Some(thread),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for FuseTree {
    /// Unmount and wait for the serving threads. While a loop device or an open file still uses
    /// the tree, it is detached lazily instead: gone from the namespace at once, and served by
    /// the threads for as long as this process lives (its users see IO errors after that).
    fn drop(&mut self) {
        let Some(mut unmounter) = self.unmounter.take() else {
            return;
        };
        let root = self.mounted.display().to_string();
        match unmounter.unmount() {
            Ok(()) => {
                let Some(thread) = self.thread.take() else {
                    return;
                };
                let t0 = Instant::now();
                while !thread.is_finished() && t0.elapsed() < JOIN_TIMEOUT {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if !thread.is_finished() {
                    tracing::warn!(
                        root,
                        "view tree unmounted, but its threads did not stop within {JOIN_TIMEOUT:?}"
                    );
                    return;
                }
                match thread.join() {
                    Ok(Ok(())) => tracing::info!(root, "view tree unmounted"),
                    Ok(Err(e)) => {
                        tracing::warn!(root, error = %e, "view tree session ended with an error")
                    }
                    Err(_) => tracing::error!(root, "a view tree thread panicked"),
                }
            }
            Err(e) => {
                tracing::warn!(
                    root,
                    error = %e,
                    "view tree is busy (loop devices or open files on it); detaching it lazily: its users get IO errors once this daemon exits"
                );
                if let Err(e) = rewind_linux::fuse_mount::detach(&self.mounted) {
                    tracing::error!(root, error = %e, "cannot detach the view tree");
                }
                // The threads keep serving the remaining users until the process exits.
            }
        }
    }
}

/// Where an export appears in a tree mounted at `root`.
pub fn export_path(root: &Path, name: &ExportName) -> PathBuf {
    let disk = root.join(&name.group).join(&name.disk);
    match &name.target {
        Target::Latest => disk.join("latest.img"),
        Target::Point(p) => disk.join("at").join(format!("{p}.img")),
        Target::Overlay(o) => disk.join("overlays").join(format!("{o}.img")),
    }
}
