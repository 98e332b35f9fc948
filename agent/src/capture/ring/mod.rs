//! The capture files served over FUSE over io_uring: our own small FUSE server, since fuser
//! has no such transport.
//!
//! We mount with a `/dev/fuse` descriptor of our own and answer INIT there, asking for
//! `FUSE_OVER_IO_URING`. The kernel then expects one queue per possible CPU; each queue
//! ([`queue`]) registers its entries (a header and a 1 MiB payload buffer each) with
//! `IORING_OP_URING_CMD` and from then on gets every request in them and commits every reply
//! with the command that fetches the next, without a `read` or `write` of `/dev/fuse` per
//! request. The `/dev/fuse` reader ([`devfuse`]) stays for what the kernel still sends there.
//!
//! What was reused: the capture logic ([`crate::capture::Capture`]: gate, claims, range locks,
//! dirty map, queue), the backing disk's descriptors, the aligned buffer pool, the `io-uring`
//! crate. What was written: the FUSE ABI subset ([`abi`]), the operations ([`ops`]), the
//! INIT handshake and the ring queues. The protocol was learnt from the kernel's
//! `fs/fuse/dev_uring.c` and `include/uapi/linux/fuse.h` and libfuse's `fuse_uring.c`.
//!
//! [`available`] says whether the kernel offers it (turning `enable_uring` on, as root); the
//! agent uses the fuser transport ([`super::fuse`]) where it does not.

pub mod abi;
pub mod devfuse;
pub mod ops;
pub mod queue;

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use rewind_linux::fuse_mount;

use super::end_watch::Phase;
use super::Capture;
use crate::error::{Error, Result};
use ops::Files;
use queue::{HelperJob, Mailbox, Queue};

/// The kernel's switch for FUSE over io_uring.
pub const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";
/// Entries of all queues together: each holds a 1 MiB payload buffer (pinned: the ring's
/// fixed buffers), so this bounds the memory; async direct IO keeps up to `max_background`
/// requests in flight, from whichever CPUs issue them.
const ENTRIES: usize = 128;
/// Entries per queue at least, however many CPUs there are.
const MIN_DEPTH: usize = 4;
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether FUSE over io_uring can be used: `param` (normally [`ENABLE_URING`]) reads `Y`, or
/// could be set to `Y` (root). Otherwise, why not.
pub fn available(param: &Path) -> std::result::Result<(), String> {
    let read = || std::fs::read_to_string(param).map(|s| s.trim() == "Y");
    match read() {
        Ok(true) => Ok(()),
        Ok(false) => {
            std::fs::write(param, "Y")
                .map_err(|e| format!("{} is N and cannot be set: {e}", param.display()))?;
            tracing::info!(param = %param.display(), "capture: turned FUSE over io_uring on");
            match read() {
                Ok(true) => Ok(()),
                _ => Err(format!("{} stays N after writing Y", param.display())),
            }
        }
        Err(e) => Err(format!(
            "{}: {e} (a kernel without CONFIG_FUSE_IO_URING)",
            param.display()
        )),
    }
}

/// The possible CPUs (the kernel makes one queue each): the highest in
/// `/sys/devices/system/cpu/possible` plus one.
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    text.trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<usize>().ok())
        .max()
        .map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |m| m + 1,
        )
}

/// The mounted capture files on the io_uring transport; unmounted when dropped.
pub struct RingMount {
    dir: PathBuf,
    /// Starting, serving or closing: whether a thread's end loses the capture.
    phase: Phase,
    stop: Arc<AtomicBool>,
    mailboxes: Vec<Arc<Mailbox>>,
    threads: Vec<JoinHandle<()>>,
}

fn mount_err(dir: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Mount {
        path: dir.to_path_buf(),
        source,
    }
}

impl RingMount {
    /// Mounts the capture files at `dir` (created if missing) and starts the queues. Fails if
    /// the kernel does not grant FUSE over io_uring at INIT or refuses the queues: the caller
    /// then mounts with the `/dev/fuse` transport.
    pub fn mount(capture: Arc<Capture>, dir: &Path) -> Result<RingMount> {
        fuse_mount::clear_dead(dir, "capture").map_err(|e| mount_err(dir)(e.into()))?;
        std::fs::create_dir_all(dir).map_err(Error::path("creating the mount directory", dir))?;
        let fuse: Arc<OwnedFd> = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open("/dev/fuse")
                .map_err(mount_err(dir))?
                .into(),
        );
        let data = format!(
            "fd={},rootmode=40000,user_id={},group_id={},default_permissions,allow_other",
            fuse.as_raw_fd(),
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw()
        );
        mount(
            Some("rewind-agent"),
            dir,
            Some("fuse.rewind-agent"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(data.as_str()),
        )
        .map_err(|e| mount_err(dir)(e.into()))?;
        let files = Arc::new(Files::new(capture));
        let stop = Arc::new(AtomicBool::new(false));
        let mut m = RingMount {
            dir: dir.to_path_buf(),
            phase: Phase::default(),
            stop: Arc::clone(&stop),
            mailboxes: Vec::new(),
            threads: Vec::new(),
        };
        // From here a failure drops `m`, which unmounts.
        let (init_tx, init_rx) = mpsc::channel();
        let (f, fd) = (Arc::clone(&files), Arc::clone(&fuse));
        m.threads.push(m.spawn("capture-devfuse", move || {
            devfuse::serve(&fd, &f, true, init_tx)
        })?);
        let init = init_rx
            .recv_timeout(INIT_TIMEOUT)
            .map_err(|_| Error::Mount {
                path: dir.to_path_buf(),
                source: std::io::Error::other("the kernel sent no FUSE INIT"),
            })?;
        if !init.uring {
            return Err(Error::Mount {
                path: dir.to_path_buf(),
                source: std::io::Error::other("the kernel did not grant FUSE over io_uring"),
            });
        }
        let (helper_tx, helper_rx) = mpsc::channel::<HelperJob>();
        let f = Arc::clone(&files);
        m.threads
            .push(m.spawn("capture-helper", move || queue::helper(&f, helper_rx))?);
        let (ready_tx, ready_rx) = mpsc::channel();
        let cpus = possible_cpus();
        let depth = (ENTRIES / cpus).max(MIN_DEPTH);
        for qid in 0..cpus {
            let mailbox = Mailbox::new().map_err(mount_err(dir))?;
            m.mailboxes.push(Arc::clone(&mailbox));
            let q = Queue {
                qid: qid as u16,
                depth,
                payload_len: devfuse::MAX_WRITE as usize,
                fuse: Arc::clone(&fuse),
                files: Arc::clone(&files),
                mailbox,
                helper: helper_tx.clone(),
                stop: Arc::clone(&stop),
            };
            let ready = ready_tx.clone();
            let thread = m.spawn("capture-ring", move || match q.register() {
                Ok(registered) => {
                    let _ = ready.send(Ok(()));
                    q.run(registered);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })?;
            m.threads.push(thread);
        }
        drop(helper_tx);
        for _ in 0..cpus {
            match ready_rx.recv_timeout(INIT_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(mount_err(dir)(e)),
                Err(_) => {
                    return Err(mount_err(dir)(std::io::Error::other(
                        "a FUSE queue did not start",
                    )))
                }
            }
        }
        m.phase.serving();
        tracing::info!(dir = %dir.display(), queues = cpus, depth,
            "capture: serving over FUSE over io_uring");
        Ok(m)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts one of the mount's threads, watched for an end while serving ([`super::end_watch`]).
    fn spawn(&self, name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
        let watch = self.phase.watch(name, &self.dir);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _watch = watch;
                body()
            })
            .map_err(Error::path("starting the FUSE threads for", &self.dir))
    }
}

impl Drop for RingMount {
    /// Unmounts; while something still uses the files (a loop device the workload keeps
    /// mounted), detaches lazily instead and leaves the threads serving until it lets go.
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        // Before the unmount: the threads may see the connection end before it returns.
        self.phase.closing();
        if let Err(e) = umount2(&self.dir, MntFlags::empty()) {
            tracing::warn!(dir, error = %e, "capture file system busy; detaching it lazily");
            let _ = fuse_mount::detach(&self.dir);
            return;
        }
        self.stop.store(true, Ordering::Release);
        for m in &self.mailboxes {
            m.kick();
        }
        let t0 = Instant::now();
        for t in self.threads.drain(..) {
            while !t.is_finished() && t0.elapsed() < JOIN_TIMEOUT {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(dir, "capture unmounted, but a FUSE thread did not stop");
            }
        }
        tracing::info!(dir, "capture file system unmounted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_turns_the_parameter_on_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let param = dir.path().join("enable_uring");
        let e = available(&param).unwrap_err();
        assert!(e.contains("CONFIG_FUSE_IO_URING"), "{e}");
        fs_write(&param, "N\n");
        available(&param).unwrap();
        assert_eq!(std::fs::read_to_string(&param).unwrap(), "Y");
        fs_write(&param, "Y\n");
        available(&param).unwrap();
    }

    fn fs_write(p: &Path, s: &str) {
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn possible_cpus_is_at_least_one() {
        assert!(possible_cpus() >= 1);
    }
}
