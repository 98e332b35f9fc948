//! One group as the relay holds it: its cache log, what is durable where (in the cache, at the
//! master target), the agent session feeding it (if one is connected), the frames waiting to go
//! upstream out of band, and how its upstream session stands.

use std::collections::VecDeque;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use rewind_formats::message::ErrorCode;
use rewind_formats::Seq;
use tokio::sync::{mpsc, watch, Notify};

use super::log::{self, Pos, Segment};
use super::meta::Meta;
use super::space::Space;
use super::writer::{self, Append};
use crate::server::registry::StopSignal;

/// The segments and where the log ends.
pub(crate) struct LogState {
    pub(crate) segments: Vec<Segment>,
    /// Appended so far (not all of it synced yet: see [`RelayGroup::synced`]).
    pub(crate) end: Pos,
    /// The seq before the first one the log may hold: what the target held when the log was
    /// empty (the next segment's name when no batch is in the log).
    pub(crate) floor: Seq,
}

impl LogState {
    /// The last batch seq in the log, or the floor.
    pub(crate) fn last_seq(&self) -> Seq {
        self.segments
            .iter()
            .rev()
            .map(|s| s.last_seq)
            .find(|s| s.0 > 0)
            .unwrap_or(self.floor)
    }

    pub(crate) fn next_seq(&self) -> Seq {
        Seq(self.last_seq().0 + 1)
    }
}

/// How the group's upstream session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// Not tried yet for this generation.
    Unknown,
    /// Connected: the target's WELCOME said this.
    Welcomed {
        generation: u64,
        durable: Seq,
        resync: bool,
    },
    /// The target refused the relay's HELLO for this generation (fenced, stale, forbidden...):
    /// the agent is told the same.
    Refused {
        generation: u64,
        code: ErrorCode,
        message: String,
    },
    /// The target could not be reached (or the session broke): the cache goes on filling.
    Unreachable(String),
}

/// The agent session feeding the group now.
#[derive(Clone)]
pub(crate) struct AgentLink {
    pub(crate) id: u64,
    pub(crate) out: mpsc::Sender<Vec<u8>>,
    pub(crate) stop: Arc<StopSignal>,
}

/// A frame from the agent that goes upstream without being cached (HASHES, reports, refusals),
/// after every cached frame before `after`.
pub(crate) struct Side {
    pub(crate) after: Pos,
    pub(crate) frame: Vec<u8>,
    /// An ERROR that ends the agent's session: the upstream session ends after it too.
    pub(crate) ends: bool,
}

pub(crate) struct RelayGroup {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) log: Mutex<LogState>,
    writer: Mutex<Option<std::sync::mpsc::SyncSender<Append>>>,
    writer_error: Mutex<Option<String>>,
    /// The last batch seq synced in the cache.
    pub(crate) relay_durable: watch::Sender<Seq>,
    /// The last seq the master target acknowledged.
    pub(crate) target_durable: watch::Sender<Seq>,
    /// How far the log is synced.
    pub(crate) synced: watch::Sender<Pos>,
    pub(crate) agent: Mutex<Option<AgentLink>>,
    pub(crate) side: Mutex<VecDeque<Side>>,
    pub(crate) side_added: Notify,
    pub(crate) upstream: watch::Sender<Upstream>,
    /// The forwarder should drop its upstream session and say HELLO again (a new generation).
    pub(crate) redo_hello: Notify,
    pub(crate) space: Arc<Space>,
    /// The last policy the target sent (at the start of the relay's session), for each new agent
    /// session.
    pub(crate) policy: Mutex<Option<Vec<u8>>>,
    /// The RPO target of that policy, seconds (0: not known yet).
    pub(crate) rpo_target_secs: AtomicU64,
    /// Since when the relay has held a batch the target has not acknowledged (None: the target
    /// holds everything): how far this leg is behind, as an upper bound.
    pending_since: Mutex<Option<Instant>>,
    /// The cache was dropped (an agent came with a newer epoch): the forwarder ends, nothing
    /// more is appended (see [`super::epoch`]).
    pub(crate) retired: AtomicBool,
}

impl RelayGroup {
    /// Opens a group's cache directory (scanning its log) or, with `new`, makes it.
    pub(crate) fn open(
        dir: PathBuf,
        name: &str,
        new: Option<Meta>,
        space: Arc<Space>,
        segment_bytes: u64,
    ) -> Result<Arc<RelayGroup>> {
        let meta = match new {
            Some(m) => {
                crate::relay::private_dir(&dir)?;
                m.store(&dir)?;
                m
            }
            None => Meta::load(&dir)?,
        };
        let segments = log::scan(&dir)?;
        let end = segments.last().map(|s| s.base + s.len).unwrap_or(0);
        let floor = Seq(meta.target_durable);
        let log = LogState {
            segments,
            end,
            floor,
        };
        let last = log.last_seq();
        let (tx, rx) = std::sync::mpsc::sync_channel(256);
        let g = Arc::new(RelayGroup {
            name: name.to_string(),
            dir,
            segment_bytes,
            meta: Mutex::new(meta),
            log: Mutex::new(log),
            writer: Mutex::new(Some(tx)),
            writer_error: Mutex::new(None),
            relay_durable: watch::Sender::new(last),
            target_durable: watch::Sender::new(floor),
            synced: watch::Sender::new(end),
            agent: Mutex::new(None),
            side: Mutex::new(VecDeque::new()),
            side_added: Notify::new(),
            upstream: watch::Sender::new(Upstream::Unknown),
            redo_hello: Notify::new(),
            space,
            policy: Mutex::new(None),
            rpo_target_secs: AtomicU64::new(0),
            pending_since: Mutex::new((last > floor).then(Instant::now)),
            retired: AtomicBool::new(false),
        });
        let w = g.clone();
        std::thread::Builder::new()
            .name(format!("relay-cache-{name}"))
            .spawn(move || writer::run(w, rx))
            .context("starting the cache writer")?;
        Ok(g)
    }

    /// The bytes the cache holds for this group.
    pub(crate) fn cached_bytes(&self) -> u64 {
        self.log
            .lock()
            .expect("log lock")
            .segments
            .iter()
            .map(|s| s.len)
            .sum()
    }

    /// The last seq the relay holds: in its cache, or known durable at the target.
    pub(crate) fn holds(&self) -> Seq {
        let log = self.log.lock().expect("log lock").last_seq();
        log.max(*self.target_durable.borrow())
    }

    pub(crate) fn cache_empty(&self) -> bool {
        self.log.lock().expect("log lock").segments.is_empty()
    }

    /// The relay has made batches up to `seq` durable (the cache writer says so).
    pub(crate) fn relay_synced(&self, seq: Seq) {
        if seq > *self.target_durable.borrow() {
            self.pending_since
                .lock()
                .expect("pending lock")
                .get_or_insert_with(Instant::now);
        }
        self.relay_durable.send_replace(seq);
    }

    /// Whether what the target lacks has waited at the relay longer than the group's RPO
    /// target: the bandwidth limit then serves this group first.
    pub(crate) fn behind_rpo_target(&self) -> bool {
        let target = self.rpo_target_secs.load(Ordering::Relaxed);
        let since = *self.pending_since.lock().expect("pending lock");
        target > 0 && since.is_some_and(|t| t.elapsed().as_secs() >= target)
    }

    /// Queue a frame for the cache (its room already taken from [`Space`]).
    pub(crate) async fn append(&self, a: Append) -> Result<(), String> {
        let tx = self.writer.lock().expect("writer lock").clone();
        let Some(tx) = tx else {
            return Err(self
                .writer_error()
                .unwrap_or_else(|| "cache writer gone".into()));
        };
        // A bounded channel: when the disk is slow, the session stops reading from the agent.
        tokio::task::spawn_blocking(move || tx.send(a))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| {
                self.writer_error()
                    .unwrap_or_else(|| "cache writer stopped".into())
            })
    }

    pub(crate) fn writer_failed(&self, why: String) {
        *self.writer_error.lock().expect("writer lock") = Some(why);
        self.writer.lock().expect("writer lock").take();
    }

    pub(crate) fn writer_error(&self) -> Option<String> {
        self.writer_error.lock().expect("writer lock").clone()
    }

    /// Where the log ends now (appended, maybe not synced).
    pub(crate) fn end(&self) -> Pos {
        self.log.lock().expect("log lock").end
    }

    /// Queue a frame to go upstream after everything appended so far.
    pub(crate) fn side(&self, frame: Vec<u8>, ends: bool, after: Pos) {
        self.side
            .lock()
            .expect("side lock")
            .push_back(Side { after, frame, ends });
        self.side_added.notify_one();
    }

    /// The master target acknowledged `durable`; the forwarder has sent everything before
    /// `sent`. Frees the segments both cover, after writing `target_durable` down (so that what
    /// the relay holds never goes backwards).
    pub(crate) fn target_acked(&self, durable: Seq, sent: Pos) -> Result<()> {
        self.target_durable.send_if_modified(|d| {
            let moved = durable > *d;
            if moved {
                *d = durable;
            }
            moved
        });
        if durable >= *self.relay_durable.borrow() {
            *self.pending_since.lock().expect("pending lock") = None;
        }
        let freeable: Vec<Segment> = {
            let log = self.log.lock().expect("log lock");
            let n = log.segments.len();
            log.segments
                .iter()
                .take(n.saturating_sub(1))
                .take_while(|s| s.last_seq <= durable && s.base + s.len <= sent)
                .cloned()
                .collect()
        };
        if freeable.is_empty() {
            return Ok(());
        }
        {
            let mut m = self.meta.lock().expect("meta lock");
            if m.target_durable < durable.0 {
                m.target_durable = durable.0;
                m.store(&self.dir)?;
            }
        }
        let mut log = self.log.lock().expect("log lock");
        for s in &freeable {
            fs::remove_file(&s.path)
                .with_context(|| format!("freeing cache segment {}", s.path.display()))?;
            log.segments.remove(0);
            self.space.give_back(s.len);
        }
        log.floor = log.floor.max(durable);
        tracing::debug!(group = %self.name, segments = freeable.len(), durable = durable.0, "freed cache segments the target holds");
        Ok(())
    }

    /// Send a frame to the agent session feeding the group, if one is connected.
    pub(crate) async fn to_agent(&self, frame: Vec<u8>) -> bool {
        let link = self.agent.lock().expect("agent lock").clone();
        match link {
            Some(l) => l.out.send(frame).await.is_ok(),
            None => false,
        }
    }

    /// End the agent session feeding the group (if any) with an ERROR.
    pub(crate) fn stop_agent(&self, code: ErrorCode, message: String) {
        if let Some(l) = self.agent.lock().expect("agent lock").as_ref() {
            l.stop.stop(code, message);
        }
    }
}
