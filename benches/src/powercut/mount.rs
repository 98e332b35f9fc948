//! A mounted power-cut file system and the cut itself: unmount, drop what was not synced,
//! mount again (a fresh superblock, so no kernel cache outlives the cut either).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use super::fs::PowercutFs;
use super::state::{CutReport, State};

/// FUSE threads per mount: requests are applied one at a time anyway (one lock), but a thread
/// blocked on a slow reply must not stall the others' replies.
const THREADS: usize = 4;
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A power-cut file system mounted at a directory, with its bytes in a backing directory;
/// unmounted when dropped.
pub struct PowercutMount {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    session: Option<(SessionUnmounter, JoinHandle<io::Result<()>>)>,
    cuts: usize,
}

impl PowercutMount {
    /// Mounts a new, empty file system at `dir` (created if missing), keeping its bytes in
    /// `backing` (an empty directory, on a real file system, not under `dir`).
    pub fn mount(backing: &Path, dir: &Path) -> io::Result<PowercutMount> {
        std::fs::create_dir_all(dir)?;
        let state = Arc::new(Mutex::new(State::new(backing)?));
        let mut m = PowercutMount {
            state,
            dir: dir.to_path_buf(),
            session: None,
            cuts: 0,
        };
        m.start()?;
        Ok(m)
    }

    fn start(&mut self) -> io::Result<()> {
        let epoch = self.lock().epoch;
        let fs = PowercutFs {
            state: self.state.clone(),
            epoch,
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("rewind-powercut".into()),
            MountOption::NoExec,
        ];
        config.acl = SessionACL::All;
        config.n_threads = Some(THREADS);
        let mut session = Session::new(fs, &self.dir, &config)?;
        let unmounter = session.unmount_callable();
        let thread = std::thread::Builder::new()
            .name("powercut-fuse".into())
            .spawn(move || session.run())?;
        self.session = Some((unmounter, thread));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unmounts (lazily if something still holds it: that holder then gets EIO, as after a
    /// crash). Returns whether the unmount was clean.
    fn stop(&mut self) -> bool {
        let Some((mut unmounter, thread)) = self.session.take() else {
            return true;
        };
        let clean = match unmounter.unmount() {
            Ok(()) => true,
            Err(_) => {
                let _ = rewind_linux::fuse_mount::detach(&self.dir);
                false
            }
        };
        if clean {
            let t0 = Instant::now();
            while !thread.is_finished() && t0.elapsed() < JOIN_TIMEOUT {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        clean
    }

    /// The power cut: unmount, drop every write since its file's last fsync and every entry
    /// change since its directory's last fsync, mount again. Whoever wrote through the mount
    /// must be dead already (kill -9): a survivor's open files answer EIO from now on.
    pub fn cut(&mut self) -> io::Result<CutReport> {
        self.stop();
        let report = self.lock().cut()?;
        self.cuts += 1;
        self.start()?;
        Ok(report)
    }

    /// What a cut would drop now.
    pub fn unsynced(&self) -> CutReport {
        self.lock().unsynced()
    }

    /// Makes every fsync of a file wait `delay` after its bytes became durable (see
    /// `State::sync_delay`).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.lock().sync_delay = delay;
    }

    /// Cuts so far.
    pub fn cuts(&self) -> usize {
        self.cuts
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PowercutMount {
    fn drop(&mut self) {
        self.stop();
    }
}
