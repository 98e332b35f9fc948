//! The sender: one thread that keeps a session with the target, streams the queue in seq order
//! as zstd-compressed BATCH frames (and TAG frames), and frees records as ACKs arrive.
//!
//! Each session starts with HELLO (the disks and their sizes, the last seq we saw acked) and
//! WELCOME (the target's durable seq). Everything after the durable seq is sent again, so a
//! broken connection loses nothing: the sender reconnects with exponential backoff and resumes.
//! A second thread per session reads ACKs; it never blocks the sender. It also takes the
//! target's CONTROL frames: a drain is recorded for the agent's drain thread (see [`crate::drain`]),
//! and one that cannot be done is answered with an ERROR, which the sender sends.
//!
//! A StaleGeneration refusal that says "fenced" (the group failed over) ends the sender for good:
//! see `Sender::fenced`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewind_linux::clock::now_ms;

use rewind_formats::{
    Batch, ControlOp, DiskInfo, ErrorCode, ErrorMsg, Hashes, Hello, HelloGroup, Message,
    RecordKind, RecordRef, ResumeStatus, Seq, Tag, TagInfo,
};

use crate::config::Settings;
use crate::dirty::DirtyMap;
use crate::drain::{self, DrainCtl, WriteGate};
use crate::error::{Error, Result};
use crate::hashclient::HashRequests;
use crate::levels::Levels;
use crate::queue::{Entry, Queue};
use crate::ratelimit::RateLimit;
use crate::sync::{RESYNC_TAG, SYNC_TAG};
use crate::wire::{read_message, Conn};

/// Largest batch: records and their data (uncompressed). Big enough to amortise a frame, small
/// enough that an ACK frees memory often.
const BATCH_MAX_BYTES: u64 = 8 << 20;
const BATCH_MAX_RECORDS: usize = 4096;
/// Most batches compressed at once.
const MAX_COMPRESSORS: usize = 4;
/// How long the sender waits for new records before checking for stop or a dead session.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// When fewer than [`LINGER_RECORDS`] records wait, the sender waits this long for more before
/// building a batch: a stream of small writes then travels in a few big batches (one zstd frame,
/// one target group commit each) instead of one batch per write. Adds at most this to the lag.
const LINGER: Duration = Duration::from_millis(2);
const LINGER_RECORDS: usize = 256;
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What the rest of the agent sees of the link.
#[derive(Default)]
pub struct Link {
    pub connected: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// The target's durable seq at the first WELCOME of this run (the sync decision uses it).
    pub first_durable: OnceLock<u64>,
    /// The resync's HASHES requests, sent by the sender and answered to the ACK reader.
    pub hashes: HashRequests,
    /// Set (to the target's durable seq, at least 1) when the target turned out to have lost
    /// acknowledged records; the sync thread takes it and compares every region.
    pub target_lost: std::sync::atomic::AtomicU64,
    /// Set before `first_durable` when the first WELCOME says "resync needed" with nothing
    /// durable: an adopted replica (a copy of other disks). The sync thread must then compare
    /// every block, never run a fresh initial sync (which skips zero blocks).
    pub compare_all: AtomicBool,
    /// The last seq the target acknowledged in an earlier run (STATE_DIR/GROUP.acked, read at
    /// start before anything rewrites it).
    pub acked_before: Option<u64>,
    /// Closed by a drain or a fence; shared with the capture.
    pub gate: Arc<WriteGate>,
    /// Drain requests from the target, done by the agent's drain thread.
    pub drain: DrainCtl,
    /// Set once the target fenced this agent: the reason. The sender has stopped for good.
    pub fenced: Mutex<Option<String>>,
    /// Frames for the sender to send in this session (answers to CONTROL: an ERROR, after which
    /// the session ends).
    pub(crate) outbox: Mutex<Vec<Message>>,
    pub(crate) stop: AtomicBool,
}

impl Link {
    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    pub fn error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn fenced(&self) -> Option<String> {
        self.fenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tell the target (in the current session) that something it asked for cannot be done;
    /// the session then ends, as after any ERROR. `queue` is poked to wake the sender.
    pub fn send_error(&self, code: ErrorCode, message: String, queue: &Queue) {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Message::Error(ErrorMsg { code, message }));
        queue.poke();
    }

    fn take_outbox(&self) -> Vec<Message> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct Sender {
    settings: Arc<Settings>,
    disks: Vec<DiskInfo>,
    queue: Arc<Queue>,
    link: Arc<Link>,
    limit: RateLimit,
    levels: Levels,
    /// Every region is pinned here when the target turns out to have lost data.
    dirty: Arc<DirtyMap>,
}

impl Sender {
    pub fn spawn(
        settings: Arc<Settings>,
        disks: Vec<DiskInfo>,
        queue: Arc<Queue>,
        link: Arc<Link>,
        dirty: Arc<DirtyMap>,
    ) -> Result<JoinHandle<()>> {
        let s = Sender {
            dirty,
            limit: RateLimit::new(settings.bandwidth_bytes_per_sec),
            levels: Levels::new(settings.level, !settings.fixed_level),
            settings,
            disks,
            queue,
            link,
        };
        std::thread::Builder::new()
            .name("sender".into())
            .spawn(move || s.run())
            .map_err(Error::path("starting the sender thread", "-"))
    }

    /// Asks the sender to end its session and return.
    pub fn stop(link: &Link, queue: &Queue) {
        link.stop.store(true, Ordering::SeqCst);
        queue.poke();
    }

    fn run(self) {
        let mut backoff = BACKOFF_MIN;
        while !self.link.stop.load(Ordering::SeqCst) {
            let t0 = Instant::now();
            let r = self.session();
            self.link.connected.store(false, Ordering::SeqCst);
            if self.link.stop.load(Ordering::SeqCst) {
                break;
            }
            if let Some(reason) = r.as_ref().err().and_then(drain::is_fencing) {
                self.fenced(reason);
                return;
            }
            match r {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(group = %self.settings.group, target = %self.settings.target,
                        error = %e, retry_in_ms = backoff.as_millis() as u64, "session with the target ended");
                    self.link.set_error(Some(e.to_string()));
                }
            }
            // A session that lasted a while was healthy: start the backoff over.
            if t0.elapsed() > BACKOFF_MAX * 3 {
                backoff = BACKOFF_MIN;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.link.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// The target refused this agent for good: the group failed over. Writes stay refused, the
    /// reason is kept in the state dir (a restart refuses to run as the group's source), and
    /// the sender does not reconnect.
    fn fenced(&self, reason: &str) {
        let s = &self.settings;
        self.link
            .gate
            .fence(&format!("group {} was failed over: {reason}", s.group));
        *self.link.fenced.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        self.link.set_error(Some(format!("fenced: {reason}")));
        let file = drain::fenced_file(&s.state_dir, &s.group);
        if let Err(e) = crate::statefile::replace(&file, format!("{reason}\n").as_bytes(), true) {
            tracing::error!(error = %e, file = %file.display(), "recording the fence");
        }
        tracing::error!(group = %s.group, target = %s.target, %reason, file = %file.display(),
            "FENCED: the target no longer takes this agent as the group's source (the group \
             failed over); not reconnecting, and the disks refuse writes (EROFS)");
    }

    fn session(&self) -> Result<()> {
        let s = &self.settings;
        // An answer meant for an earlier session is not this one's business.
        self.link.take_outbox();
        let addr = s.target.to_string();
        let mut conn = Conn::connect(&s.target, s.tls_client.as_ref())?;
        let io_err = |e: std::io::Error| Error::Connection {
            addr: addr.clone(),
            why: e.to_string(),
        };
        conn.set_read_timeout(Some(WELCOME_TIMEOUT))
            .map_err(io_err)?;
        let st = self.queue.stats();
        let hello = Hello {
            agent: s.agent.clone(),
            groups: vec![HelloGroup {
                group: s.group.clone(),
                generation: s.generation,
                last_acked: Seq(st.base.map_or(0, |b| b.wrapping_add(st.acked_seq))),
                disks: self.disks.clone(),
            }],
        };
        conn.write_all(&Message::Hello(hello).to_frame())
            .map_err(io_err)?;
        let welcome = match read_message(&mut conn, &addr)? {
            Some(Message::Welcome(w)) => w,
            Some(Message::Error(e)) => {
                return Err(Error::Remote {
                    code: e.code,
                    message: e.message,
                })
            }
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "expected WELCOME, got {}",
                    other.kind().name()
                )))
            }
            None => {
                return Err(Error::Connection {
                    addr,
                    why: "closed before WELCOME".into(),
                })
            }
        };
        let Some(wg) = welcome.groups.iter().find(|g| g.group == s.group) else {
            return Err(Error::Protocol(format!(
                "WELCOME does not mention group {}",
                s.group
            )));
        };
        let generation = wg.generation;
        let durable = wg.durable.0;
        let first = self.link.first_durable.get().is_none();
        let st = self.queue.stats();
        // Has the target lost records it acknowledged? In this run (its durable seq is below
        // what it acknowledged, or it says so), or since the last run (below the seq kept in
        // the state dir).
        let lost_now = wg.status == ResumeStatus::ResyncNeeded
            || st
                .base
                .is_some_and(|b| durable < b.wrapping_add(st.acked_seq));
        let lost_before =
            first && durable > 0 && self.link.acked_before.is_some_and(|a| durable < a);
        if lost_now || lost_before {
            tracing::error!(group = %s.group, durable, acked_before = self.link.acked_before,
                "the target lost acknowledged data: every region will be compared with it");
            // Before anything is renumbered or cleared: if this fails, the next session finds
            // the loss again.
            self.dirty.pin_all()?;
        }
        // first_durable before the base: the sync thread wakes on the base and reads it.
        if first && durable == 0 && wg.status == ResumeStatus::ResyncNeeded {
            self.link.compare_all.store(true, Ordering::SeqCst);
        }
        let _ = self.link.first_durable.set(durable);
        let base = if lost_now && st.base.is_some() {
            // Renumber so that what is queued follows the target's durable seq.
            self.queue.rebase(durable)
        } else {
            self.queue.set_base(durable)
        };
        if lost_now || lost_before {
            // Everything queued goes out again inside the window; the sync thread runs the
            // compare and records the window.
            self.queue.open_window_at_unacked(RESYNC_TAG);
            self.link
                .target_lost
                .store(durable.max(1), Ordering::SeqCst);
        } else if first && durable == 0 {
            // An empty target: what was captured before this first contact is part of the
            // initial sync's window too.
            self.queue.open_window_at_unacked(SYNC_TAG);
        }
        if !self.queue.ack(durable.wrapping_sub(base)) {
            return Err(Error::Protocol(format!(
                "the target's durable seq {durable} is beyond the last seq {} recorded",
                base.wrapping_add(st.last_seq)
            )));
        }
        self.queue.rewind_cursor();
        conn.set_read_timeout(None).map_err(io_err)?;
        tracing::info!(group = %s.group, target = %addr, durable, base, "session started");

        let dead = Arc::new(AtomicBool::new(false));
        let reader = self.spawn_reader(&conn, base, Arc::clone(&dead))?;
        self.link.connected.store(true, Ordering::SeqCst);
        self.link.set_error(None);
        let r = self.stream(&mut conn, base, generation, &dead);
        conn.shutdown();
        let reader_err = reader.join().unwrap_or(None);
        self.link.hashes.session_ended();
        match (r, reader_err) {
            // The reader usually knows better why the session died (an ERROR from the target).
            (Err(_), Some(e)) | (Ok(()), Some(e)) => Err(e),
            (r, None) => r,
        }
    }

    fn stream(&self, conn: &mut Conn, base: u64, generation: u64, dead: &AtomicBool) -> Result<()> {
        let s = &self.settings;
        // Compression is the sender's main cost (one core does a few hundred MB/s at level 1):
        // when several batches are ready, they are compressed in parallel, then sent in order.
        let parallel = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_COMPRESSORS);
        loop {
            if self.link.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            if dead.load(Ordering::SeqCst) {
                return Err(Error::Connection {
                    addr: s.target.to_string(),
                    why: "the connection closed".into(),
                });
            }
            self.send_hash_requests(conn)?;
            self.send_outbox(conn)?;
            let unsent = self.queue.wait_unsent(IDLE_WAIT);
            if unsent == 0 {
                continue;
            }
            if unsent < LINGER_RECORDS {
                std::thread::sleep(LINGER);
            }
            let first = self.queue.next_batch(BATCH_MAX_RECORDS, BATCH_MAX_BYTES);
            if first.is_empty() {
                continue;
            }
            let mut groups = vec![first];
            while groups.len() < parallel {
                let more = self.queue.next_batch(BATCH_MAX_RECORDS, BATCH_MAX_BYTES);
                if more.is_empty() {
                    break;
                }
                groups.push(more);
            }
            let frames: Vec<(Vec<u8>, usize)> = if groups.len() == 1 {
                vec![self.frame(&groups[0], base, generation)?]
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = groups
                        .iter()
                        .map(|g| scope.spawn(move || self.frame(g, base, generation)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a compression thread panicked"))
                        .collect::<Result<Vec<_>>>()
                })?
            };
            for (group, (frame, raw)) in groups.iter().zip(&frames) {
                // The time spent waiting on the link tells the level chooser whether
                // compression would pay (see levels).
                let t = Instant::now();
                self.limit.take(frame.len() as u64);
                self.send(conn, frame)?;
                self.levels.sent(*raw, frame.len(), t.elapsed());
                if matches!(group.first(), Some(Entry::Tag { .. })) {
                    self.queue.collect_sent_tags();
                }
            }
        }
    }

    /// Sends the answers to CONTROL frames; an ERROR ends the session (as the protocol says).
    fn send_outbox(&self, conn: &mut Conn) -> Result<()> {
        for m in self.link.take_outbox() {
            self.send(conn, &m.to_frame())?;
            if let Message::Error(e) = m {
                return Err(Error::Connection {
                    addr: self.settings.target.to_string(),
                    why: format!(
                        "closed after refusing the target's request ({:?}: {})",
                        e.code, e.message
                    ),
                });
            }
        }
        Ok(())
    }

    /// Sends the resync's pending HASHES requests (the target answers with its own hashes).
    fn send_hash_requests(&self, conn: &mut Conn) -> Result<()> {
        for r in self.link.hashes.take_unsent() {
            let frame = Message::Hashes(Hashes {
                group: self.settings.group.clone(),
                disk: r.disk,
                offset: r.offset,
                block_size: r.block_size,
                // The target answers with as many hashes as asked for; ours are not needed.
                hashes: vec![0; r.blocks as usize],
            })
            .to_frame();
            self.send(conn, &frame)?;
        }
        Ok(())
    }

    /// Writes one frame; a failure is the connection's.
    fn send(&self, conn: &mut Conn, frame: &[u8]) -> Result<()> {
        conn.write_all(frame).map_err(|e| Error::Connection {
            addr: self.settings.target.to_string(),
            why: format!("sending: {e}"),
        })
    }

    /// The frame for one group of entries from [`Queue::next_batch`]: a TAG, or a BATCH; and
    /// the batch's uncompressed size (0 for a tag).
    fn frame(&self, entries: &[Entry], base: u64, generation: u64) -> Result<(Vec<u8>, usize)> {
        let s = &self.settings;
        Ok(match &entries[0] {
            Entry::Tag { seq, tag } => (
                Message::Tag(Tag {
                    group: s.group.clone(),
                    generation,
                    tag: TagInfo {
                        seq: Seq(base.wrapping_add(*seq)),
                        kind: tag.kind,
                        timestamp_ms: tag.timestamp_ms,
                        name: tag.name.clone(),
                    },
                })
                .to_frame(),
                0,
            ),
            Entry::Record { seq, .. } => {
                // Spooled records' bytes come from the spool file.
                let mut spooled: Vec<Option<Vec<u8>>> = Vec::with_capacity(entries.len());
                for e in entries {
                    spooled.push(match e {
                        Entry::Record { record, .. }
                            if record.kind == RecordKind::Data && record.data.is_none() =>
                        {
                            Some(self.queue.read_spooled(record).map_err(|e| {
                                Error::Protocol(format!(
                                    "reading a spooled record (disk {} offset {}): {e}",
                                    record.disk, record.offset
                                ))
                            })?)
                        }
                        _ => None,
                    });
                }
                let refs: Vec<RecordRef<'_>> = entries
                    .iter()
                    .zip(&spooled)
                    .filter_map(|(e, sp)| match e {
                        Entry::Record { record, .. } => Some(RecordRef {
                            disk: record.disk,
                            kind: record.kind,
                            offset: record.offset,
                            len: record.len,
                            data: match sp {
                                Some(bytes) => bytes,
                                None => record.data.as_deref().unwrap_or(&[]),
                            },
                        }),
                        Entry::Tag { .. } => None,
                    })
                    .collect();
                let level = self.levels.next();
                let batch = Batch::build(
                    &s.group,
                    generation,
                    Seq(base.wrapping_add(*seq)),
                    now_ms(),
                    &refs,
                    level,
                );
                let raw = batch.uncompressed_len as usize;
                self.levels.compressed(level, raw, batch.compressed.len());
                (Message::Batch(batch).to_frame(), raw)
            }
        })
    }

    /// The ACK reader: applies ACKs to the queue; returns why the session ended, if not cleanly.
    fn spawn_reader(
        &self,
        conn: &Conn,
        base: u64,
        dead: Arc<AtomicBool>,
    ) -> Result<JoinHandle<Option<Error>>> {
        let addr = self.settings.target.to_string();
        let mut rconn = conn.try_clone().map_err(|e| Error::Connection {
            addr: addr.clone(),
            why: format!("cloning the socket: {e}"),
        })?;
        let queue = Arc::clone(&self.queue);
        let link = Arc::clone(&self.link);
        let group = self.settings.group.clone();
        std::thread::Builder::new()
            .name("ack-reader".into())
            .spawn(move || {
                let why = loop {
                    match read_message(&mut rconn, &addr) {
                        Ok(Some(Message::Ack(a))) if a.group == group => {
                            let ok = queue.ack(a.durable.0.wrapping_sub(base));
                            if !ok {
                                break Some(Error::Protocol(format!(
                                    "ACK for seq {} outside what was sent (base {base})",
                                    a.durable.0
                                )));
                            }
                        }
                        Ok(Some(Message::Hashes(h))) if h.group == group => {
                            if !link.hashes.answer(h) {
                                tracing::debug!("a HASHES answer nobody asked for: ignored");
                            }
                        }
                        Ok(Some(Message::Error(e))) => {
                            break Some(Error::Remote {
                                code: e.code,
                                message: e.message,
                            })
                        }
                        Ok(Some(Message::Control(c))) => control(&link, &queue, &group, c),
                        Ok(Some(other)) => {
                            tracing::debug!(kind = other.kind().name(), "unexpected frame ignored");
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                };
                dead.store(true, Ordering::SeqCst);
                queue.poke();
                why
            })
            .map_err(Error::path("starting the ack reader thread", "-"))
    }
}

/// A CONTROL frame from the target: recorded for the thread that does it, or refused with an
/// ERROR (which ends the session, so the target's waiter learns at once).
fn control(link: &Link, queue: &Queue, group: &str, c: rewind_formats::Control) {
    if c.group != group {
        link.send_error(
            ErrorCode::UnknownGroup,
            format!(
                "CONTROL {:?} for group {}: this agent serves group {group}",
                c.op, c.group
            ),
            queue,
        );
        return;
    }
    match c.op {
        ControlOp::Drain => {
            let r = rewind_formats::validate_name(&c.arg)
                .map_err(|e| format!("drain: bad tag name {:?}: {e}", c.arg))
                .and_then(|()| {
                    if link.fenced().is_some() {
                        return Err("drain: this agent is fenced".to_string());
                    }
                    link.drain
                        .request(&c.arg)
                        .map_err(|e| format!("drain: {e}"))
                });
            match r {
                Ok(()) => {
                    tracing::info!(group, tag = %c.arg, "the target asks for a drain");
                }
                Err(why) => {
                    tracing::warn!(group, %why, "drain refused");
                    link.send_error(ErrorCode::Busy, why, queue);
                }
            }
        }
        ControlOp::Resume => {
            if link.drain.resume(&link.gate) {
                tracing::warn!(
                    group,
                    "the target gave up the drain: writes are accepted again"
                );
            }
        }
        op => {
            tracing::info!(
                group,
                ?op,
                "CONTROL from the target ignored (not implemented)"
            );
        }
    }
}
