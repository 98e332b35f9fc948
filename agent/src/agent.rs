//! A running agent: wires capture, queue, sender, sync, status and control together, and takes
//! them down again in an order that loses nothing that can be saved.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewind_formats::{DiskInfo, TagKind};

use crate::capture::backing::Backing;
use crate::capture::fuse::CaptureMount;
use crate::capture::loopdev::LoopDev;
use crate::capture::uring::UringWriter;
use crate::capture::Capture;
use crate::config::{IoEngine, Settings};
use crate::dirty::DirtyMap;
use crate::drain::DrainState;
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::queue::Queue;
use crate::rangelock::RangeLocks;
use crate::sender::{Link, Sender};
use crate::spool::Spool;
use crate::status::{DiskStatus, Status, SyncState};
use crate::sync::{Outcome, Pass, SyncProgress, RESYNC_TAG, SYNC_TAG};
use crate::{control, drain, schedule, statefile, status};
use rewind_linux::aligned::Pool;
use rewind_linux::clock::now_ms;

const STATUS_INTERVAL: Duration = Duration::from_millis(200);
/// How often acknowledged regions are cleared in the dirty-region map, and how long after
/// their acknowledgement (a region written again soon stays dirty: no fdatasync to set it).
const CLEAR_INTERVAL: Duration = Duration::from_secs(1);
const CLEAR_DELAY_PASSES: usize = 2;
/// How often the sync thread looks for bitmap mode while idle.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// io_uring entries: the most captured writes in flight to the backing disks at once (the
/// kernel sends at most `max_background` async direct IO requests, plus one per FUSE thread).
const URING_ENTRIES: u32 = 256;

/// A background thread's work, given the shared state.
type ThreadBody = fn(&Shared);

/// State the background threads share with the status writer.
struct Shared {
    settings: Arc<Settings>,
    queue: Arc<Queue>,
    link: Arc<Link>,
    capture: Arc<Capture>,
    dirty: Arc<DirtyMap>,
    /// The dirty-region map was found valid at start (else every region is compared).
    dirty_valid: bool,
    sync_state: Mutex<SyncState>,
    /// The tag name of the pass running or last run (`initial-sync` or `resync`).
    sync_kind: Mutex<Option<&'static str>>,
    /// When the sync started reading, and when it finished (for its rate).
    sync_times: Mutex<(Option<Instant>, Option<Instant>)>,
    progress: Vec<Arc<SyncProgress>>,
    devices: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// Set at shutdown; every background thread (the tag schedule too) watches it.
    stop: Arc<AtomicBool>,
}

pub struct Agent {
    shared: Arc<Shared>,
    mount: Option<CaptureMount>,
    loops: Vec<LoopDev>,
    sender: Option<JoinHandle<()>>,
    threads: Vec<JoinHandle<()>>,
    /// Held for the agent's life: a second agent on the same state dir is refused.
    _lock: File,
}

fn lock_state_dir(settings: &Settings) -> Result<File> {
    let dir = &settings.state_dir;
    if !dir.is_dir() {
        return Err(Error::Config {
            what: "--state-dir",
            why: format!("{} does not exist or is not a directory", dir.display()),
        });
    }
    crate::statefile::make_private_dir(dir)?;
    let p = dir.join("agent.lock");
    let f = File::create(&p).map_err(Error::path("creating", &p))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Config {
            what: "--state-dir",
            why: format!("{} is in use by another rewind-agent", dir.display()),
        });
    }
    Ok(f)
}

impl Agent {
    /// Opens the disks, serves them through FUSE and loop devices, and starts replicating.
    pub fn start(settings: Settings) -> Result<Agent> {
        settings.validate()?;
        let lock = lock_state_dir(&settings)?;
        if let Some(reason) = drain::read_fenced(&settings.state_dir, &settings.group) {
            let e = Error::Fenced {
                group: settings.group.clone(),
                reason,
                path: drain::fenced_file(&settings.state_dir, &settings.group),
            };
            tracing::error!(group = %settings.group, "refusing to start: {e}");
            return Err(e);
        }
        let settings = Arc::new(settings);
        let disks = settings
            .disks
            .iter()
            .map(|d| Backing::open(&d.name, &d.path).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let infos: Vec<DiskInfo> = disks
            .iter()
            .map(|d| DiskInfo {
                disk: d.name.clone(),
                size_bytes: d.size_bytes,
            })
            .collect();
        let sizes: Vec<u64> = disks.iter().map(|d| d.size_bytes).collect();
        let (dirty, dirty_valid) = DirtyMap::open(
            &statefile::group_file(&settings.state_dir, &settings.group, "dirty"),
            &sizes,
        )?;
        let spool = match settings.spool_bytes {
            0 => None,
            n => Some(Spool::create(
                &statefile::group_file(&settings.state_dir, &settings.group, "spool"),
                n,
            )?),
        };
        let queue = Arc::new(Queue::new(settings.max_queue_bytes, spool));
        let pinned = dirty.stats().pinned;
        if pinned > 0 || window_file(&settings).exists() {
            // Regions that may differ from the target (a crash, or no map): the target's points
            // are not consistent from the first record this run sends until they are resynced.
            let name = if dirty_valid { RESYNC_TAG } else { SYNC_TAG };
            tracing::info!(group = %settings.group, regions = pinned, kind = name,
                "regions to compare with the target");
            open_window(&window_file(&settings), &queue, name)?;
        }
        let uring = match settings.io_engine {
            IoEngine::Sync => None,
            IoEngine::Uring => match UringWriter::new(URING_ENTRIES) {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::warn!(error = %e, "capture: io_uring is not available; using \
                        synchronous writes (slower: pass --io-engine sync to silence this)");
                    None
                }
            },
        };
        tracing::info!(
            engine = if uring.is_some() { "io_uring" } else { "sync" },
            "capture: backing write engine"
        );
        let link = Arc::new(Link {
            acked_before: read_acked(&acked_file(&settings)),
            ..Link::default()
        });
        let capture = Arc::new(Capture {
            gate: Arc::clone(&link.gate),
            disks,
            queue: Arc::clone(&queue),
            locks: Arc::new(RangeLocks::new()),
            inflight: Arc::new(InFlight::default()),
            pool: Pool::new(),
            dirty: Arc::clone(&dirty),
            uring,
        });
        let shared = Arc::new(Shared {
            settings: Arc::clone(&settings),
            queue: Arc::clone(&queue),
            link,
            capture: Arc::clone(&capture),
            dirty,
            dirty_valid,
            sync_state: Mutex::new(SyncState::Pending),
            sync_kind: Mutex::new(None),
            sync_times: Mutex::new((None, None)),
            progress: (0..infos.len())
                .map(|_| Arc::new(SyncProgress::default()))
                .collect(),
            devices: Mutex::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let mut agent = Agent {
            shared: Arc::clone(&shared),
            mount: None,
            loops: Vec::new(),
            sender: None,
            threads: Vec::new(),
            _lock: lock,
        };
        // From here on, a failure drops `agent`, which undoes what was set up.
        agent.mount = Some(CaptureMount::mount(
            Arc::clone(&capture),
            &settings.mount_dir,
            settings.fuse_threads,
        )?);
        for d in &settings.disks {
            let file = settings.mount_dir.join(&d.name);
            let mut dev = LoopDev::attach(&file)?;
            let link = settings.links_dir.join(&settings.group).join(&d.name);
            dev.link(&link)?;
            tracing::info!(group = %settings.group, disk = %d.name, device = %dev.device.display(),
                link = %link.display(), backing = %d.path.display(), "protecting disk");
            shared
                .devices
                .lock()
                .expect("devices lock")
                .push((dev.device.clone(), link));
            agent.loops.push(dev);
        }
        control::serve(&settings.state_dir, Arc::clone(&queue))?;
        agent.sender = Some(Sender::spawn(
            Arc::clone(&settings),
            infos,
            Arc::clone(&queue),
            Arc::clone(&shared.link),
            Arc::clone(&shared.dirty),
        )?);
        let threads: [(&str, ThreadBody); 4] = [
            ("sync", sync_thread),
            ("dirty-clear", clear_thread),
            ("status", status_thread),
            ("drain", drain_thread),
        ];
        for (name, body) in threads {
            let sh = Arc::clone(&shared);
            agent.threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || body(&sh))
                    .map_err(Error::path("starting a thread for", &settings.state_dir))?,
            );
        }
        let stop = Arc::clone(&shared.stop);
        if let Some(t) = schedule::spawn(Arc::clone(&settings), Arc::clone(&queue), stop)? {
            agent.threads.push(t);
        }
        Ok(agent)
    }

    /// The disks' names, in order.
    pub fn disk_names(&self) -> Vec<String> {
        self.shared
            .settings
            .disks
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }

    /// The loop device of each disk, in order.
    pub fn devices(&self) -> Vec<PathBuf> {
        self.loops.iter().map(|l| l.device.clone()).collect()
    }

    /// Stops: no new writes (loop devices detached, FUSE unmounted; a device still mounted by the
    /// workload is detached by the kernel once unmounted), then up to `drain` for the target to
    /// acknowledge what is queued, then the threads end. Returns whether everything was acked.
    pub fn shutdown(mut self, drain: Duration) -> bool {
        self.loops.clear();
        self.mount = None;
        // A fenced agent has no target to send to any more.
        let drain = if self.shared.link.fenced().is_some() {
            Duration::ZERO
        } else {
            drain
        };
        let drained = self.shared.queue.wait_drained(drain);
        if !drained {
            let st = self.shared.queue.stats();
            tracing::warn!(
                queued_bytes = st.queued_bytes,
                spooled_bytes = st.spooled_bytes,
                last_seq = st.last_seq,
                acked_seq = st.acked_seq,
                "stopping with unacknowledged records: their regions stay dirty and are \
                 resynced at the next start"
            );
        }
        self.stop_threads();
        // As in the clear thread: the acknowledged seq first, then the regions it covers.
        let q = self.shared.queue.stats();
        let saved = match q.base {
            Some(base) => write_acked(
                &acked_file(&self.shared.settings),
                base.wrapping_add(q.acked_seq),
            )
            .and_then(|()| self.shared.dirty.clear_acked(q.acked_seq))
            .map(|_| ()),
            None => Ok(()),
        };
        if let Err(e) = saved.and_then(|()| self.shared.dirty.sync()) {
            tracing::warn!(error = %e, "saving the dirty-region map");
        }
        write_status(&self.shared);
        drained
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        Sender::stop(&self.shared.link, &self.shared.queue);
        self.shared.queue.stop();
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(control::socket_path(&self.shared.settings.state_dir));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Order matters: devices and mount first (no writer blocks on a stopped queue), then
        // the threads.
        self.loops.clear();
        self.mount = None;
        if self.sender.is_some() || !self.threads.is_empty() {
            self.stop_threads();
        }
    }
}

/// The window file: a resync window may be open at the target (this run or an earlier one
/// opened it, and its SyncEnd is not acknowledged yet).
fn window_file(settings: &Settings) -> PathBuf {
    statefile::group_file(&settings.state_dir, &settings.group, "window")
}

/// Keeps the target level with the disks: the initial sync, the partial resync of the regions
/// a crash left dirty, and the resync after bitmap mode. Each pass sits in a window (SyncBegin to
/// SyncEnd) whose points the target reports as not recoverable.
fn sync_thread(sh: &Shared) {
    let set = |s| *sh.sync_state.lock().expect("sync state lock") = s;
    if sh.queue.wait_base().is_err() {
        return;
    }
    let settings = &sh.settings;
    let durable = sh.link.first_durable.get().copied().unwrap_or(0);
    // An adopted target (resync needed, nothing durable) holds a copy of other disks: compare.
    let compare_all = sh.link.compare_all.load(Ordering::SeqCst);
    let mut fresh = durable == 0 && !compare_all;
    let window = window_file(settings);
    // (Into an adopted target every pass is a compare: a resync, whatever the local state.)
    let mut name = if (fresh || !sh.dirty_valid) && !compare_all {
        SYNC_TAG
    } else {
        RESYNC_TAG
    };
    // (A target that lost acknowledged data is found by the sender: see `target_lost` below.)
    if fresh {
        // Fresh: the target has nothing, every region is sent (no compare needed).
        if let Err(e) = sh.dirty.pin_all() {
            tracing::error!(group = %settings.group, error = %e, "initial sync cannot start");
            set(SyncState::Failed);
            return;
        }
    }
    // A window an earlier run left open at the target is closed by this run's SyncEnd.
    let mut ran = window.exists();
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        if sh.link.target_lost.swap(0, Ordering::SeqCst) > 0 {
            // The sender renumbered the stream (Queue::rebase), opened the window and pinned
            // every region; the window is recorded here.
            if let Err(e) = open_window(&window, &sh.queue, RESYNC_TAG) {
                tracing::error!(error = %e, "recording the resync window");
            }
            name = RESYNC_TAG;
            fresh = false;
            ran = true;
        }
        if sh.queue.overflowing() {
            set(SyncState::Bitmap);
            tracing::warn!(group = %settings.group, "bitmap mode: waiting for the target to \
                catch up, then the dirty regions are resynced");
            if let Err(e) = open_window(&window, &sh.queue, RESYNC_TAG) {
                tracing::error!(error = %e, "recording the resync window");
            }
            name = RESYNC_TAG;
            while !sh.queue.end_overflow() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(IDLE_POLL);
            }
            ran = true;
        }
        let regions = sh.dirty.pinned();
        if regions.is_empty() {
            if ran {
                if !close_window(sh, &window, name) {
                    continue; // bitmap mode or stopping
                }
                tracing::info!(group = %settings.group, kind = name,
                    "sync complete and acknowledged: the target's latest point is consistent");
                set(SyncState::Done);
                ran = false;
            } else if *sh.sync_state.lock().expect("sync state lock") == SyncState::Pending {
                tracing::info!(group = %settings.group, "no region differs from the target: no sync needed");
                set(SyncState::NotNeeded);
            }
            while !sh.queue.overflowing()
                && sh.link.target_lost.load(Ordering::SeqCst) == 0
                && sh.dirty.pinned_count() == 0
                && !sh.stop.load(Ordering::SeqCst)
            {
                std::thread::sleep(IDLE_POLL);
            }
            continue;
        }
        if let Err(e) = open_window(&window, &sh.queue, name) {
            tracing::error!(error = %e, "recording the resync window");
        }
        ran = true;
        set(SyncState::Running);
        *sh.sync_kind.lock().expect("sync kind lock") = Some(name);
        *sh.sync_times.lock().expect("sync times lock") = (Some(Instant::now()), None);
        let bytes = regions.len() as u64 * crate::dirty::REGION;
        tracing::info!(group = %settings.group, kind = name, fresh, regions = regions.len(), bytes,
            "sync pass started");
        let pass = Pass {
            capture: &sh.capture,
            dirty: &sh.dirty,
            hashes: &sh.link.hashes,
            progress: &sh.progress,
            stop: &sh.stop,
        };
        if sh.link.compare_all.load(Ordering::SeqCst) && sh.queue.last_seq() == 0 {
            if let Err(e) = pass.resend_first_block() {
                tracing::warn!(group = %settings.group, error = %e, "cannot give the adopted target its first record");
            }
        }
        let result = pass.run(&regions, fresh);
        sh.sync_times.lock().expect("sync times lock").1 = Some(Instant::now());
        let sent: u64 = sh
            .progress
            .iter()
            .map(|p| p.sent_bytes.load(Ordering::Relaxed))
            .sum();
        match result {
            Ok(Outcome::Done) => {
                tracing::info!(group = %settings.group, kind = name, sent_bytes = sent, "sync pass done");
                fresh = false;
            }
            Ok(Outcome::Overflow) => {
                tracing::warn!(group = %settings.group, kind = name, "sync pass cut short by bitmap mode");
                fresh = false;
            }
            Err(Error::Stopping) => return,
            Err(e) => {
                tracing::error!(group = %settings.group, error = %e, "sync pass failed; retrying in 5 s");
                set(SyncState::Failed);
                for _ in 0..50 {
                    if sh.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(IDLE_POLL);
                }
            }
        }
    }
}

/// Does the drains the target asks for (see [`crate::drain`]): refuse new writes, let the
/// admitted ones be recorded, let a running sync finish, tag the last seq (Failover), and wait
/// for the target to acknowledge the tag. A drain that cannot be done is answered with an ERROR
/// and writes are admitted again (no failover follows it).
fn drain_thread(sh: &Shared) {
    while !sh.stop.load(Ordering::SeqCst) {
        let Some((tag, epoch, resend)) = sh.link.drain.next(IDLE_POLL) else {
            continue;
        };
        let group = &sh.settings.group;
        if resend {
            tracing::info!(%group, %tag, "drain asked again: its tag is sent again");
        } else {
            tracing::warn!(%group, %tag, "DRAIN: writes are refused from now on; sending \
                everything captured, then tagging the last seq");
        }
        match drain_once(sh, &tag, epoch) {
            Ok(seq) => {
                sh.link.drain.done(epoch, &tag, seq);
                tracing::warn!(%group, %tag, seq, "DRAINED: the target holds every write up to \
                    the tag; writes stay refused");
            }
            Err(DrainEnd::Superseded) => {
                tracing::info!(%group, %tag, "drain given up by the target or replaced");
            }
            Err(DrainEnd::Fenced) => {
                // Nothing more to send: the drain ends here (writes stay refused: fenced).
                sh.link.drain.failed(epoch, &sh.link.gate);
                tracing::warn!(%group, %tag, "drain ended: the agent was fenced");
            }
            Err(DrainEnd::Stopping) => return,
            Err(DrainEnd::Failed(why)) => {
                sh.link.drain.failed(epoch, &sh.link.gate);
                tracing::error!(%group, %tag, %why, "drain failed: writes are accepted again");
                sh.link.send_error(
                    rewind_formats::ErrorCode::Internal,
                    format!("drain {tag}: {why}"),
                    &sh.queue,
                );
            }
        }
    }
}

enum DrainEnd {
    /// The target gave the drain up (Resume) or asked for another.
    Superseded,
    /// The target fenced the agent (the group failed over).
    Fenced,
    Stopping,
    Failed(String),
}

/// How long a tag the queue refuses (other than for a sync or bitmap mode) is retried before
/// the drain fails.
const DRAIN_TAG_RETRY: Duration = Duration::from_secs(2);

fn drain_once(sh: &Shared, tag: &str, epoch: u64) -> std::result::Result<u64, DrainEnd> {
    let link = &sh.link;
    // Checked between every wait: a Resume or a fence ends this drain, shutdown too.
    let check = || {
        if sh.stop.load(Ordering::SeqCst) {
            Err(DrainEnd::Stopping)
        } else if link.fenced().is_some() {
            Err(DrainEnd::Fenced)
        } else if !link.drain.current(epoch) {
            Err(DrainEnd::Superseded)
        } else {
            Ok(())
        }
    };
    if !link.drain.begin(epoch, &link.gate, tag) {
        return Err(DrainEnd::Superseded);
    }
    // Writes admitted before the gate closed finish and are recorded: the tag goes after them.
    while !link.gate.wait_idle(IDLE_POLL) {
        check()?;
    }
    // A tag inside a sync (or with writes dropped in bitmap mode) would not be recoverable: as
    // `rewind-agent tag` does, wait for it to finish. With writes refused, it does.
    let mut said = false;
    loop {
        check()?;
        let state = *sh.sync_state.lock().expect("sync state lock");
        let busy = sh.queue.overflowing()
            || sh.dirty.pinned_count() > 0
            || link.target_lost.load(Ordering::SeqCst) > 0
            || matches!(
                state,
                SyncState::Pending
                    | SyncState::Running
                    | SyncState::Acking
                    | SyncState::Bitmap
                    | SyncState::Failed
            );
        if !busy {
            break;
        }
        if !said {
            tracing::info!(group = %sh.settings.group, ?state, "drain: waiting for the sync to finish");
            said = true;
        }
        std::thread::sleep(IDLE_POLL);
    }
    // The queue refuses a tag while a sync window is still open (its end not yet queued):
    // retried; any other refusal for a while fails the drain.
    let t0 = Instant::now();
    let (id, seq) = loop {
        check()?;
        match sh.queue.push_tag(tag, TagKind::Failover, now_ms()) {
            Ok(r) => break r,
            Err(Error::Stopping) => return Err(DrainEnd::Stopping),
            Err(e) if t0.elapsed() > DRAIN_TAG_RETRY => {
                return Err(DrainEnd::Failed(e.to_string()))
            }
            Err(_) => std::thread::sleep(IDLE_POLL),
        }
    };
    let Some(seq) = seq else {
        // (A drain comes from a session, which set the base: not expected.)
        return Err(DrainEnd::Failed(
            "the tag has no seq: the agent has not reached the target".into(),
        ));
    };
    tracing::info!(group = %sh.settings.group, tag, seq, "drain: tag queued after the last captured write");
    while !sh.queue.wait_tag(id, IDLE_POLL) {
        check()?;
    }
    Ok(seq)
}

/// Opens a resync window: durably noted first, so a crash before its SyncEnd is acknowledged
/// closes it at the next start.
fn open_window(file: &std::path::Path, queue: &Queue, name: &str) -> Result<()> {
    queue.open_window(name);
    if !file.exists() {
        statefile::replace(file, b"", true)?;
    }
    Ok(())
}

/// Closes the window and waits for its SyncEnd to be acknowledged. False if bitmap mode began
/// or the agent is stopping first.
fn close_window(sh: &Shared, file: &std::path::Path, name: &str) -> bool {
    let id = match sh.queue.close_window(name) {
        Some(id) => Some(id),
        // No record since the window opened: the SyncEnd names the last seq there is (a
        // window an earlier run left open at the target ends here too).
        None => match sh.queue.push_tag(name, TagKind::SyncEnd, now_ms()) {
            Ok((id, _)) => Some(id),
            Err(Error::Stopping) => return false,
            // Nothing was ever written: the target has no window open.
            Err(_) => None,
        },
    };
    *sh.sync_state.lock().expect("sync state lock") = SyncState::Acking;
    if let Some(id) = id {
        while !sh.queue.wait_tag(id, IDLE_POLL) {
            if sh.stop.load(Ordering::SeqCst)
                || sh.queue.overflowing()
                || sh.link.target_lost.load(Ordering::SeqCst) > 0
            {
                return false;
            }
        }
    }
    let _ = std::fs::remove_file(file);
    true
}

/// `STATE_DIR/GROUP.acked`: the last wire seq the target acknowledged, written before any
/// region it covers is cleared from the dirty-region map. A target whose durable seq is below
/// it at the next start has lost acknowledged data.
fn acked_file(settings: &Settings) -> PathBuf {
    statefile::group_file(&settings.state_dir, &settings.group, "acked")
}

fn read_acked(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_acked(path: &std::path::Path, seq: u64) -> Result<()> {
    statefile::replace(path, format!("{seq}\n").as_bytes(), true)
}

/// Clears acknowledged regions from the dirty-region map, a few seconds after their
/// acknowledgement.
fn clear_thread(sh: &Shared) {
    let path = acked_file(&sh.settings);
    let mut written = None;
    let mut acked_history = std::collections::VecDeque::new();
    while !sh.stop.load(Ordering::SeqCst) {
        std::thread::sleep(CLEAR_INTERVAL);
        let q = sh.queue.stats();
        acked_history.push_back(q.acked_seq);
        // First the acknowledged seq, durably; only then regions it covers may be cleared.
        if let Some(base) = q.base {
            let wire = base.wrapping_add(q.acked_seq);
            if written != Some(wire) {
                match write_acked(&path, wire) {
                    Ok(()) => written = Some(wire),
                    Err(e) => {
                        tracing::warn!(error = %e, "recording the acknowledged seq");
                        written = None;
                    }
                }
            }
        }
        if acked_history.len() <= CLEAR_DELAY_PASSES {
            continue;
        }
        let acked = acked_history.pop_front().expect("history is not empty");
        if written.is_none() {
            continue;
        }
        if let Err(e) = sh.dirty.clear_acked(acked) {
            tracing::warn!(error = %e, "clearing the dirty-region map");
        }
    }
}

fn status_thread(sh: &Shared) {
    while !sh.stop.load(Ordering::SeqCst) {
        write_status(sh);
        std::thread::sleep(STATUS_INTERVAL);
    }
}

fn write_status(sh: &Shared) {
    let q = sh.queue.stats();
    let base = q.base.unwrap_or(0);
    let sync_state = *sh.sync_state.lock().expect("sync state lock");
    let dirty = sh.dirty.stats();
    let devices = sh.devices.lock().expect("devices lock").clone();
    let disks = sh
        .capture
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = &sh.progress[i];
            let done = p.done_bytes.load(Ordering::Relaxed);
            let total = p.total_bytes.load(Ordering::Relaxed);
            let percent = match sync_state {
                SyncState::NotNeeded | SyncState::Done => 100.0,
                SyncState::Pending => 0.0,
                _ if total == 0 => 100.0,
                _ => (done as f64 * 100.0 / total as f64).min(100.0),
            };
            let (device, link) = devices.get(i).cloned().unwrap_or_default();
            DiskStatus {
                name: d.name.clone(),
                path: d.path.clone(),
                device,
                link,
                size_bytes: d.size_bytes,
                sync_percent: (percent * 10.0).round() / 10.0,
                sync_sent_bytes: p.sent_bytes.load(Ordering::Relaxed),
            }
        })
        .collect();
    let scanned: u64 = sh
        .progress
        .iter()
        .map(|p| p.done_bytes.load(Ordering::Relaxed))
        .sum();
    let sync_bytes_per_sec = match *sh.sync_times.lock().expect("sync times lock") {
        (Some(start), end) => {
            let secs = end
                .unwrap_or_else(Instant::now)
                .duration_since(start)
                .as_secs_f64();
            // (A pass over holes ends in microseconds: no meaningful rate.)
            (secs >= 0.1).then(|| (scanned as f64 / secs) as u64)
        }
        _ => None,
    };
    // One snapshot of the drain for both fields.
    let (draining, drained) = match sh.link.drain.state() {
        DrainState::Draining { tag } => (Some(tag), None),
        DrainState::Drained { tag, seq } => (None, Some(status::Drained { tag, seq })),
        _ => (None, None),
    };
    let st = Status {
        group: sh.settings.group.clone(),
        target: sh.settings.target.to_string(),
        pid: std::process::id(),
        updated_ms: now_ms(),
        connected: sh.link.connected.load(Ordering::SeqCst),
        last_error: sh.link.error(),
        last_seq: base.wrapping_add(q.last_seq),
        acked_seq: base.wrapping_add(q.acked_seq),
        caught_up: q.base.is_some() && q.entries == 0,
        queued_bytes: q.queued_bytes,
        spooled_bytes: q.spooled_bytes,
        spool_capacity_bytes: q.spool_capacity,
        bitmap_mode: q.overflow,
        dropped_writes: q.dropped,
        dirty_regions: dirty.dirty,
        pinned_regions: dirty.pinned,
        lag_ms_p50: q.lag_ms.map(|l| l.0),
        lag_ms_p99: q.lag_ms.map(|l| l.1),
        lag_ms_max: q.lag_ms.map(|l| l.2),
        sync: sync_state,
        sync_kind: sh
            .sync_kind
            .lock()
            .expect("sync kind lock")
            .map(str::to_string),
        sync_bytes_per_sec,
        generation: sh.settings.generation,
        draining,
        drained,
        fenced: sh.link.fenced(),
        disks,
    };
    if let Err(e) = status::write(&sh.settings.state_dir, &st) {
        tracing::warn!(error = %e, "writing the status file");
    }
}
