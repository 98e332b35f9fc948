//! A running agent: wires capture, queue, sender, sync, drain, status and control together, and
//! takes them down again in an order that loses nothing that can be saved.
//!
//! Each thread gets only what it uses; what the sender learns of the target reaches the others
//! on channels ([`crate::stream::link`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rewind_formats::DiskInfo;

use crate::capture::backing::Backing;
use crate::capture::fuse::CaptureMount;
use crate::capture::loopdev::LoopDev;
use crate::capture::ring::{self, RingMount};
use crate::capture::uring::UringWriter;
use crate::capture::Capture;
use crate::config::{FuseTransport, IoEngine, Settings};
use crate::drain::thread::Drainer;
use crate::drain::{DrainCtl, WriteGate};
use crate::error::{Error, Result};
use crate::policy::PolicyCtl;
use crate::state::report::{LinkView, StatusWriter};
use crate::state::StateDir;
use crate::stream::inflight::InFlight;
use crate::stream::levels::Levels;
use crate::stream::link::Outbox;
use crate::stream::queue::Queue;
use crate::stream::ratelimit::RateLimit;
use crate::stream::sender::{self, Sender};
use crate::stream::spool::Spool;
use crate::sync::clear::{self, Clearer};
use crate::sync::dirty::DirtyMap;
use crate::sync::hashclient::HashRequests;
use crate::sync::progress::{SyncProgress, SyncStatus};
use crate::sync::rangelock::RangeLocks;
use crate::sync::thread::{self as sync_thread, SyncThread};
use crate::{control, schedule};
use rewind_linux::aligned::Pool;

/// io_uring entries: the most captured writes in flight to the backing disks at once (the
/// kernel sends at most `max_background` async direct IO requests, plus one per FUSE thread).
const URING_ENTRIES: u32 = 256;

pub struct Agent {
    settings: Arc<Settings>,
    state: StateDir,
    queue: Arc<Queue>,
    dirty: Arc<DirtyMap>,
    /// Closed by a drain or a fence; tells whether the agent is fenced.
    gate: Arc<WriteGate>,
    /// Set at shutdown; every background thread (the tag schedule too) watches it.
    stop: Arc<AtomicBool>,
    mount: Option<Mounted>,
    loops: Vec<LoopDev>,
    sender: Option<JoinHandle<()>>,
    /// Hands the status writer back for the last status at shutdown.
    status: Option<JoinHandle<StatusWriter>>,
    threads: Vec<JoinHandle<()>>,
    /// Held for the agent's life: a second agent on the same state dir is refused.
    _lock: File,
}

/// Starts a named thread.
fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(Error::path("starting a thread for", name))
}

fn uring_engine(settings: &Settings) -> Option<UringWriter> {
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
    uring
}

/// The capture files, on whichever FUSE transport serves them; unmounted when dropped.
enum Mounted {
    Ring(RingMount),
    DevFuse(CaptureMount),
}

impl Mounted {
    fn dir(&self) -> &std::path::Path {
        match self {
            Mounted::Ring(m) => m.dir(),
            Mounted::DevFuse(m) => m.dir(),
        }
    }
}

/// Mounts the capture files: over io_uring where the settings and the kernel allow, else
/// through fuser on `/dev/fuse` (saying why, once).
fn mount_capture(settings: &Settings, capture: &Arc<Capture>) -> Result<Mounted> {
    let dir = &settings.mount_dir;
    let why_not = match settings.fuse_transport {
        FuseTransport::DevFuse => None,
        t => {
            let tried = ring::available(std::path::Path::new(ring::ENABLE_URING))
                .map_err(|why| Error::Mount {
                    path: dir.clone(),
                    source: std::io::Error::other(why),
                })
                .and_then(|()| RingMount::mount(Arc::clone(capture), dir));
            match tried {
                Ok(m) => return Ok(Mounted::Ring(m)),
                Err(e) if t == FuseTransport::Uring => return Err(e),
                Err(e) => Some(e),
            }
        }
    };
    if let Some(e) = why_not {
        tracing::warn!(error = %e, "capture: FUSE over io_uring is not available; serving the \
            capture files through /dev/fuse (slower: --fuse-transport dev-fuse silences this)");
    }
    let m = CaptureMount::mount(Arc::clone(capture), dir, settings.fuse_threads)?;
    tracing::info!(dir = %dir.display(), "capture: serving through /dev/fuse (fuser)");
    Ok(Mounted::DevFuse(m))
}

impl Agent {
    /// Opens the disks, serves them through FUSE and loop devices, and starts replicating.
    pub fn start(settings: Settings) -> Result<Agent> {
        settings.validate()?;
        let state = StateDir::new(&settings.state_dir, &settings.group);
        let lock = state.lock()?;
        if let Some(reason) = state.read_fenced() {
            let e = Error::Fenced {
                group: settings.group.to_string(),
                reason,
                path: state.fenced_file(),
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
                disk: d.name.to_string(),
                size_bytes: d.size_bytes,
            })
            .collect();
        let sizes: Vec<u64> = disks.iter().map(|d| d.size_bytes).collect();
        let (dirty, dirty_valid) = DirtyMap::open(&state.dirty_map(), &sizes)?;
        // Always a spool file, if of size 0 (then it takes nothing): a policy may size it later.
        let spool = Some(Spool::create(&state.spool(), settings.spool_bytes)?);
        let queue = Arc::new(Queue::new(settings.max_queue_bytes, spool));
        sync_thread::open_window_at_start(&settings.group, &queue, &dirty, dirty_valid, &state)?;
        let gate = Arc::new(WriteGate::default());
        let capture = Arc::new(Capture {
            gate: Arc::clone(&gate),
            disks: disks.clone(),
            queue: Arc::clone(&queue),
            locks: Arc::new(RangeLocks::new()),
            inflight: Arc::new(InFlight::default()),
            pool: Pool::new(),
            dirty: Arc::clone(&dirty),
            uring: uring_engine(&settings),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut agent = Agent {
            settings: Arc::clone(&settings),
            state: state.clone(),
            queue: Arc::clone(&queue),
            dirty: Arc::clone(&dirty),
            gate: Arc::clone(&gate),
            stop: Arc::clone(&stop),
            mount: None,
            loops: Vec::new(),
            sender: None,
            status: None,
            threads: Vec::new(),
            _lock: lock,
        };
        // From here on, a failure drops `agent`, which undoes what was set up.
        let mounted = mount_capture(&settings, &capture)?;
        let files_dir = mounted.dir().to_path_buf();
        agent.mount = Some(mounted);
        let mut devices = Vec::new();
        for d in &settings.disks {
            let file = files_dir.join(d.name.as_str());
            let mut dev = LoopDev::attach(&file)?;
            let link = settings
                .links_dir
                .join(settings.group.as_str())
                .join(d.name.as_str());
            dev.link(&link)?;
            tracing::info!(group = %settings.group, disk = %d.name, device = %dev.device.display(),
                link = %link.display(), backing = %d.path.display(), "protecting disk");
            devices.push((dev.device.clone(), link));
            agent.loops.push(dev);
        }
        control::serve(&state, Arc::clone(&queue))?;

        let hashes = Arc::new(HashRequests::default());
        let drain = Arc::new(DrainCtl::default());
        let verify = Arc::new(crate::sync::verify::VerifyCtl::default());
        let (outbox, answers) = Outbox::new(Arc::clone(&queue));
        let (sync_events, sync_rx) = mpsc::channel();
        let (link_events, link_rx) = mpsc::channel();
        let progress: Arc<[SyncProgress]> = infos.iter().map(|_| SyncProgress::default()).collect();
        let sync_status = Arc::new(SyncStatus::default());
        // Shared with the policy the target sends (level, bandwidth schedule).
        let limit = Arc::new(RateLimit::new(settings.bandwidth_bytes_per_sec));
        let levels = Arc::new(Levels::new(settings.level, !settings.fixed_level));
        let policy = Arc::new(PolicyCtl::load(
            &state,
            limit.clone(),
            levels.clone(),
            Arc::clone(&queue),
        ));
        let reports = Arc::new(crate::metrics::report::ReportSlot::default());
        let schedule_policy = policy.clone();
        agent.sender = Some(
            Sender {
                targets: sender::targets::Targets::new(settings.targets()),
                settings: Arc::clone(&settings),
                state: state.clone(),
                disks: infos,
                queue: Arc::clone(&queue),
                dirty: Arc::clone(&dirty),
                hashes: Arc::clone(&hashes),
                limit,
                levels,
                acked_before: state.read_acked(),
                control: sender::Control {
                    drain: Arc::clone(&drain),
                    gate: Arc::clone(&gate),
                    outbox: outbox.clone(),
                    policy: policy.clone(),
                    verify: Arc::clone(&verify),
                },
                answers,
                sync_events,
                link_events,
                reports: Arc::clone(&reports),
                stop: Arc::clone(&stop),
            }
            .spawn()?,
        );
        let verifier = crate::sync::verify::VerifyThread {
            group: settings.group.to_string(),
            capture: Arc::clone(&capture),
            hashes: Arc::clone(&hashes),
            ctl: verify,
            outbox: outbox.clone(),
            stop: Arc::clone(&stop),
        };
        agent.threads.push(spawn("verify", move || verifier.run())?);
        let sync = SyncThread {
            group: settings.group.to_string(),
            state: state.clone(),
            capture,
            dirty_valid,
            hashes,
            events: sync_rx,
            status: Arc::clone(&sync_status),
            progress: Arc::clone(&progress),
            window: crate::sync::window::SyncWindow::new(policy.clone()),
            stop: Arc::clone(&stop),
            lost: false,
        };
        agent.threads.push(spawn("sync", move || sync.run())?);
        let clearer = Clearer {
            state: state.clone(),
            queue: Arc::clone(&queue),
            dirty: Arc::clone(&dirty),
            stop: Arc::clone(&stop),
        };
        agent
            .threads
            .push(spawn("dirty-clear", move || clearer.run())?);
        let link = LinkView::new(link_rx);
        // The group as the metrics and the report to the target see it.
        let sources = Arc::new(crate::metrics::Sources {
            settings: Arc::clone(&settings),
            queue: Arc::clone(&queue),
            dirty: Arc::clone(&dirty),
            progress: Arc::clone(&progress),
            sync: Arc::clone(&sync_status),
            drain: Arc::clone(&drain),
            gate: Arc::clone(&gate),
            connected: link.connected_flag(),
            owed: crate::metrics::group::Owed::at_start(dirty.pinned_count() > 0),
        });
        if let Some(addr) = settings.metrics_listen {
            let registry = crate::metrics::registry(Arc::clone(&sources));
            agent.threads.push(crate::metrics::http::spawn(
                addr,
                registry,
                Arc::clone(&stop),
            )?);
        }
        let writer = StatusWriter {
            settings: Arc::clone(&settings),
            state,
            queue: Arc::clone(&queue),
            dirty: Arc::clone(&dirty),
            disks,
            devices,
            progress,
            sync: Arc::clone(&sync_status),
            drain: Arc::clone(&drain),
            gate: Arc::clone(&gate),
            link,
            policy,
            sources,
            reports,
        };
        let st = Arc::clone(&stop);
        agent.status = Some(spawn("status", move || writer.run(&st))?);
        let drainer = Drainer {
            group: settings.group.to_string(),
            queue: Arc::clone(&queue),
            dirty,
            sync: sync_status,
            gate,
            requests: drain,
            outbox,
            stop: Arc::clone(&stop),
        };
        agent.threads.push(spawn("drain", move || drainer.run())?);
        agent.threads.push(schedule::spawn(
            Arc::clone(&settings),
            queue,
            schedule_policy,
            stop,
        )?);
        Ok(agent)
    }

    /// The disks' names, in order.
    pub fn disk_names(&self) -> Vec<String> {
        self.settings
            .disks
            .iter()
            .map(|d| d.name.to_string())
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
        let drain = if self.gate.fenced().is_some() {
            Duration::ZERO
        } else {
            drain
        };
        let drained = self.queue.wait_drained(drain);
        if !drained {
            let st = self.queue.stats();
            tracing::warn!(
                queued_bytes = st.queued_bytes,
                spooled_bytes = st.spooled_bytes,
                %st.last_seq,
                %st.acked_seq,
                "stopping with unacknowledged records: their regions stay dirty and are \
                 resynced at the next start"
            );
        }
        let writer = self.stop_threads();
        if let Err(e) = clear::save_at_exit(&self.state, &self.queue, &self.dirty) {
            tracing::warn!(error = %e, "saving the dirty-region map");
        }
        if let Some(mut w) = writer {
            w.write();
        }
        drained
    }

    /// Ends every thread; returns the status writer (if its thread ended normally).
    fn stop_threads(&mut self) -> Option<StatusWriter> {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes every waiter on the queue: the sender first of all.
        self.queue.stop();
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let writer = self.status.take().and_then(|t| t.join().ok());
        let _ = std::fs::remove_file(self.state.control_socket());
        writer
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Order matters: devices and mount first (no writer blocks on a stopped queue), then
        // the threads.
        self.loops.clear();
        self.mount = None;
        if self.sender.is_some() || self.status.is_some() || !self.threads.is_empty() {
            self.stop_threads();
        }
    }
}
