//! One connection to the target: pipelined sends and an ACK reader.
//!
//! The caller writes BATCH frames without waiting for acks, as long as the bytes sent but not yet
//! acked stay under the in-flight limit. A reader thread takes ACK frames as they come (an ACK for
//! seq S covers everything <= S), measures each batch's ack latency, frees window space and calls
//! an optional hook (used to persist the acked seq). ERROR frames and connection loss end the
//! session; the next call on it returns the reason.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rewind_formats::{ErrorCode, Message, Tag};

use crate::error::{Error, Result};
use crate::wire::{read_message, send_message, write_all_parts, Conn};

/// Called from the reader thread with the new durable seq after each ACK that advances it.
pub type AckHook = Box<dyn FnMut(u64) + Send>;

/// How long [`Session::finish`] waits for the target to close its side.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Limits of one session.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Most record bytes sent but not acked (one batch may always be in flight).
    pub max_inflight_bytes: u64,
    /// Longest wait for ack progress before giving up.
    pub stall_timeout: Duration,
}

/// Why the session ended.
#[derive(Clone, Debug)]
enum Closed {
    Eof,
    Lost(String),
    Remote(ErrorCode, String),
    Protocol(String),
}

impl Closed {
    fn to_error(&self) -> Error {
        match self {
            Closed::Eof => Error::ConnectionLost("the target closed the connection".into()),
            Closed::Lost(why) => Error::ConnectionLost(why.clone()),
            Closed::Remote(code, message) => Error::Remote {
                code: *code,
                message: message.clone(),
            },
            Closed::Protocol(why) => Error::Protocol(why.clone()),
        }
    }
}

struct Sent {
    last_seq: u64,
    data_bytes: u64,
    at: Instant,
}

struct AckState {
    durable: u64,
    highest_sent: u64,
    pending: VecDeque<Sent>,
    inflight_bytes: u64,
    latencies_ms: Vec<f64>,
    last_ack_at: Option<Instant>,
    closed: Option<Closed>,
}

struct Shared {
    state: Mutex<AckState>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self, why: Closed) {
        let mut st = self.lock();
        st.closed.get_or_insert(why);
        self.cond.notify_all();
    }
}

/// What a session measured.
#[derive(Clone, Debug, Default)]
pub struct SessionStats {
    /// Ack latency of each acked batch (send start to ACK arrival), in milliseconds.
    pub latencies_ms: Vec<f64>,
    pub first_send: Option<Instant>,
    pub last_ack_at: Option<Instant>,
    /// Highest durable seq the target reported.
    pub durable: u64,
    /// Frame bytes written.
    pub wire_bytes: u64,
    pub batches: u64,
}

/// A live connection with its ACK reader thread.
pub struct Session {
    conn: Conn,
    group: String,
    generation: u64,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    limits: SessionLimits,
    first_send: Option<Instant>,
    wire_bytes: u64,
    batches: u64,
}

impl Session {
    /// Starts the ACK reader on `conn`, which has just been welcomed with `durable`.
    pub fn start(
        conn: Conn,
        group: &str,
        generation: u64,
        durable: u64,
        limits: SessionLimits,
        mut on_ack: Option<AckHook>,
    ) -> Result<Session> {
        let mut rconn = conn
            .try_clone()
            .map_err(Error::io("clone the connection for the ack reader"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(AckState {
                durable,
                highest_sent: durable,
                pending: VecDeque::new(),
                inflight_bytes: 0,
                latencies_ms: Vec::new(),
                last_ack_at: None,
                closed: None,
            }),
            cond: Condvar::new(),
        });
        let sh = Arc::clone(&shared);
        let g = group.to_string();
        let reader = std::thread::Builder::new()
            .name("ack-reader".into())
            .spawn(move || loop {
                let why = match read_message(&mut rconn) {
                    Ok(Some(Message::Ack(ack))) => {
                        if ack.group != g {
                            continue; // not ours: ignore
                        }
                        match on_ack_frame(&sh, ack.durable.0) {
                            Ok(Some(d)) => {
                                if let Some(hook) = on_ack.as_mut() {
                                    hook(d);
                                }
                                continue;
                            }
                            Ok(None) => continue,
                            Err(why) => why,
                        }
                    }
                    Ok(Some(Message::Error(e))) => Closed::Remote(e.code, e.message),
                    Ok(Some(_)) => continue, // CONTROL and the like: a load generator ignores them
                    Ok(None) => Closed::Eof,
                    Err(Error::ConnectionLost(why)) => Closed::Lost(why),
                    Err(e) => Closed::Protocol(e.to_string()),
                };
                sh.close(why);
                return;
            })
            .map_err(Error::io("spawn the ack reader thread"))?;
        Ok(Session {
            conn,
            group: group.to_string(),
            generation,
            shared,
            reader: Some(reader),
            limits,
            first_send: None,
            wire_bytes: 0,
            batches: 0,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Highest durable seq reported so far.
    pub fn durable(&self) -> u64 {
        self.shared.lock().durable
    }

    /// Waits until `ready` holds, failing if the session closes or acks stop advancing for the
    /// stall timeout.
    fn wait_until(
        &self,
        what: &str,
        mut ready: impl FnMut(&AckState) -> bool,
    ) -> Result<MutexGuard<'_, AckState>> {
        let mut st = self.shared.lock();
        let mut seen = st.durable;
        let mut deadline = Instant::now() + self.limits.stall_timeout;
        loop {
            if ready(&st) {
                return Ok(st);
            }
            if let Some(c) = &st.closed {
                return Err(c.to_error());
            }
            if st.durable != seen {
                seen = st.durable;
                deadline = Instant::now() + self.limits.stall_timeout;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "{what}: no ack progress for {:?} (durable seq {}, sent up to {})",
                    self.limits.stall_timeout, st.durable, st.highest_sent
                )));
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends one BATCH frame covering seqs up to `last_seq` with `data_bytes` of records, first
    /// waiting for window space.
    pub fn send_batch(&mut self, frame: &[u8], last_seq: u64, data_bytes: u64) -> Result<()> {
        self.send_batch_parts(&[frame], last_seq, data_bytes)
    }

    /// [`Session::send_batch`] for a frame given as consecutive parts (written with writev,
    /// so record data can go from where it lies straight to the socket).
    pub fn send_batch_parts(
        &mut self,
        parts: &[&[u8]],
        last_seq: u64,
        data_bytes: u64,
    ) -> Result<()> {
        let max = self.limits.max_inflight_bytes;
        {
            let mut st = self.wait_until("waiting for in-flight window", |st| {
                st.inflight_bytes == 0 || st.inflight_bytes + data_bytes <= max
            })?;
            let at = Instant::now();
            st.pending.push_back(Sent {
                last_seq,
                data_bytes,
                at,
            });
            st.inflight_bytes += data_bytes;
            st.highest_sent = st.highest_sent.max(last_seq);
            drop(st);
            self.first_send.get_or_insert(at);
        }
        self.write(parts, "send BATCH")?;
        self.batches += 1;
        Ok(())
    }

    /// Sends a TAG frame (tags are not acked).
    pub fn send_tag(&mut self, tag: &Tag) -> Result<()> {
        if let Some(c) = &self.shared.lock().closed {
            return Err(c.to_error());
        }
        let frame = Message::Tag(tag.clone()).to_frame();
        self.write(&[&frame], "send TAG")
    }

    /// Sends any message as is (tests).
    pub fn send_message(&mut self, msg: &Message) -> Result<()> {
        send_message(&mut self.conn, msg).inspect_err(|e| {
            self.shared.close(Closed::Lost(e.to_string()));
        })
    }

    fn write(&mut self, parts: &[&[u8]], what: &str) -> Result<()> {
        if let Err(e) = write_all_parts(&mut self.conn, parts) {
            // The reader usually learns why first (an ERROR frame, or EOF): give it a moment,
            // since its reason is the better answer.
            let st = self.shared.lock();
            let (mut st, _) = self
                .shared
                .cond
                .wait_timeout_while(st, Duration::from_secs(1), |st| st.closed.is_none())
                .unwrap_or_else(|e| e.into_inner());
            let closed = st
                .closed
                .get_or_insert_with(|| Closed::Lost(format!("{what}: {e}")));
            return Err(closed.to_error());
        }
        self.wire_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Waits until seq `seq` is durable.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        self.wait_until(&format!("waiting for the ack of seq {seq}"), |st| {
            st.durable >= seq
        })
        .map(drop)
    }

    /// Ends the session gracefully: half-closes, lets the target finish reading everything sent
    /// (it closes its side on our EOF), then collects the statistics.
    pub fn finish(mut self) -> SessionStats {
        let _ = self.conn.shutdown(Shutdown::Write);
        {
            let st = self.shared.lock();
            let _ = self
                .shared
                .cond
                .wait_timeout_while(st, CLOSE_WAIT, |st| st.closed.is_none());
        }
        self.stats()
    }

    /// Ends the session at once (after a failure) and collects the statistics.
    pub fn abandon(mut self) -> SessionStats {
        self.stats()
    }

    fn stats(&mut self) -> SessionStats {
        let _ = self.conn.shutdown(Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        let mut st = self.shared.lock();
        SessionStats {
            latencies_ms: std::mem::take(&mut st.latencies_ms),
            first_send: self.first_send,
            last_ack_at: st.last_ack_at,
            durable: st.durable,
            wire_bytes: self.wire_bytes,
            batches: self.batches,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(h) = self.reader.take() {
            let _ = self.conn.shutdown(Shutdown::Both);
            let _ = h.join();
        }
    }
}

/// Applies an ACK: returns the new durable seq if it advanced.
fn on_ack_frame(shared: &Shared, durable: u64) -> std::result::Result<Option<u64>, Closed> {
    let mut st = shared.lock();
    if durable > st.highest_sent {
        return Err(Closed::Protocol(format!(
            "ACK for seq {durable} but only seqs up to {} were sent",
            st.highest_sent
        )));
    }
    if durable <= st.durable {
        return Ok(None);
    }
    let now = Instant::now();
    st.durable = durable;
    st.last_ack_at = Some(now);
    while st.pending.front().is_some_and(|s| s.last_seq <= durable) {
        let s = st.pending.pop_front().expect("front exists");
        st.inflight_bytes -= s.data_bytes;
        st.latencies_ms
            .push(now.duration_since(s.at).as_secs_f64() * 1e3);
    }
    shared.cond.notify_all();
    Ok(Some(durable))
}
