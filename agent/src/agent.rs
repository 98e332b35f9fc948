//! A running agent: wires capture, queue, sender, sync, status and control together, and takes
//! them down again in an order that loses nothing that can be saved.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewind_formats::DiskInfo;

use crate::aligned::Pool;
use crate::capture::backing::Backing;
use crate::capture::fuse::CaptureMount;
use crate::capture::loopdev::LoopDev;
use crate::capture::uring::UringWriter;
use crate::capture::Capture;
use crate::config::{IoEngine, Settings};
use crate::error::{Error, Result};
use crate::inflight::InFlight;
use crate::queue::Queue;
use crate::rangelock::RangeLocks;
use crate::sender::{now_ms, Link, Sender};
use crate::status::{DiskStatus, Status, SyncState};
use crate::sync::SyncProgress;
use crate::{control, schedule, status, sync};

const STATUS_INTERVAL: Duration = Duration::from_millis(200);
/// io_uring entries: the most captured writes in flight to the backing disks at once (the
/// kernel sends at most `max_background` async direct IO requests, plus one per FUSE thread).
const URING_ENTRIES: u32 = 256;

/// State the background threads share with the status writer.
struct Shared {
    settings: Arc<Settings>,
    queue: Arc<Queue>,
    link: Arc<Link>,
    capture: Arc<Capture>,
    sync_state: Mutex<SyncState>,
    /// When the sync started reading, and when it finished (for its rate).
    sync_times: Mutex<(Option<Instant>, Option<Instant>)>,
    progress: Vec<Arc<SyncProgress>>,
    devices: Mutex<Vec<(PathBuf, PathBuf)>>,
    stop: AtomicBool,
}

pub struct Agent {
    shared: Arc<Shared>,
    mount: Option<CaptureMount>,
    loops: Vec<LoopDev>,
    sender: Option<JoinHandle<()>>,
    threads: Vec<JoinHandle<()>>,
    /// Stops the tag schedule thread (its own flag: `Shared::stop` is not behind an Arc).
    schedule_stop: Arc<AtomicBool>,
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
        let queue = Arc::new(Queue::new(settings.max_queue_bytes));
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
        let capture = Arc::new(Capture {
            disks,
            queue: Arc::clone(&queue),
            locks: Arc::new(RangeLocks::new()),
            inflight: Arc::new(InFlight::default()),
            pool: Pool::new(),
            uring,
        });
        let shared = Arc::new(Shared {
            settings: Arc::clone(&settings),
            queue: Arc::clone(&queue),
            link: Arc::new(Link::default()),
            capture: Arc::clone(&capture),
            sync_state: Mutex::new(SyncState::Pending),
            sync_times: Mutex::new((None, None)),
            progress: (0..infos.len())
                .map(|_| Arc::new(SyncProgress::default()))
                .collect(),
            devices: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let mut agent = Agent {
            shared: Arc::clone(&shared),
            mount: None,
            loops: Vec::new(),
            sender: None,
            threads: Vec::new(),
            schedule_stop: Arc::new(AtomicBool::new(false)),
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
        )?);
        let sh = Arc::clone(&shared);
        agent.threads.push(
            std::thread::Builder::new()
                .name("sync".into())
                .spawn(move || sync_thread(&sh))
                .map_err(Error::path(
                    "starting the sync thread for",
                    &settings.state_dir,
                ))?,
        );
        let sh = Arc::clone(&shared);
        agent.threads.push(
            std::thread::Builder::new()
                .name("status".into())
                .spawn(move || {
                    while !sh.stop.load(Ordering::SeqCst) {
                        write_status(&sh);
                        std::thread::sleep(STATUS_INTERVAL);
                    }
                })
                .map_err(Error::path(
                    "starting the status thread for",
                    &settings.state_dir,
                ))?,
        );
        let stop = Arc::clone(&agent.schedule_stop);
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
        let drained = self.shared.queue.wait_drained(drain);
        if !drained {
            let st = self.shared.queue.stats();
            tracing::warn!(
                queued_bytes = st.queued_bytes,
                last_seq = st.last_seq,
                acked_seq = st.acked_seq,
                "stopping with unacknowledged records: they are lost (no spool yet)"
            );
        }
        self.stop_threads();
        write_status(&self.shared);
        drained
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.schedule_stop.store(true, Ordering::SeqCst);
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

/// Decides whether an initial sync is needed, runs it, and marks it done once acknowledged.
fn sync_thread(sh: &Shared) {
    let set = |s| *sh.sync_state.lock().expect("sync state lock") = s;
    if sh.queue.wait_base().is_err() {
        return;
    }
    let durable = sh.link.first_durable.get().copied().unwrap_or(0);
    let settings = &sh.settings;
    let marker = sync::marker(&settings.state_dir, &settings.group);
    if durable > 0 && marker.exists() {
        tracing::warn!(group = %settings.group, durable,
            "the target has this group and a sync completed before: no initial sync. Changes made \
             while the agent was not running are not detected (dirty bitmap and resync come later)");
        set(SyncState::NotNeeded);
        return;
    }
    let fresh = durable == 0;
    let _ = std::fs::remove_file(&marker);
    set(SyncState::Running);
    sh.sync_times.lock().expect("sync times lock").0 = Some(Instant::now());
    tracing::info!(group = %settings.group, fresh, "initial sync started");
    let result = sync::run(&sh.capture, &sh.progress, fresh);
    sh.sync_times.lock().expect("sync times lock").1 = Some(Instant::now());
    let last = match result {
        Ok(last) => last,
        Err(Error::Stopping) => return,
        Err(e) => {
            tracing::error!(group = %settings.group, error = %e, "initial sync failed");
            set(SyncState::Failed);
            return;
        }
    };
    set(SyncState::Acking);
    while sh.queue.stats().acked_seq < last {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(e) = sync::mark_done(&settings.state_dir, &settings.group) {
        tracing::error!(error = %e, "recording the completed sync");
    }
    tracing::info!(group = %settings.group, "initial sync complete and acknowledged");
    set(SyncState::Done);
}

fn write_status(sh: &Shared) {
    let q = sh.queue.stats();
    let base = q.base.unwrap_or(0);
    let sync_state = *sh.sync_state.lock().expect("sync state lock");
    let devices = sh.devices.lock().expect("devices lock").clone();
    let disks = sh
        .capture
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = &sh.progress[i];
            let done = p.done_bytes.load(Ordering::Relaxed);
            let percent = match sync_state {
                SyncState::NotNeeded => 100.0,
                SyncState::Pending => 0.0,
                _ => (done as f64 * 100.0 / d.size_bytes as f64).min(100.0),
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
            (secs > 0.0).then(|| (scanned as f64 / secs) as u64)
        }
        _ => None,
    };
    let st = Status {
        group: sh.settings.group.clone(),
        target: sh.settings.target.to_string(),
        pid: std::process::id(),
        updated_ms: now_ms(),
        connected: sh.link.connected.load(Ordering::SeqCst),
        last_error: sh.link.error(),
        last_seq: base + q.last_seq,
        acked_seq: base + q.acked_seq,
        caught_up: q.base.is_some() && q.entries == 0,
        queued_bytes: q.queued_bytes,
        sync: sync_state,
        sync_bytes_per_sec,
        disks,
    };
    if let Err(e) = status::write(&sh.settings.state_dir, &st) {
        tracing::warn!(error = %e, "writing the status file");
    }
}
