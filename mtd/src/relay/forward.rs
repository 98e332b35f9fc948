//! The forwarder of one group: a session with the master target, as the agent would have had,
//! that sends the cached frames in seq order and the agent's out-of-band frames in their place,
//! and brings back what the target says: ACKs free the cache (and are told to the agent as the
//! target-durable seq), CONTROL and HASHES answers go to the agent session, and a refusal
//! (fencing, a stale generation) reaches the agent with the target's code and reason.
//!
//! It runs for as long as the relay does, whether or not the agent is connected: data the relay
//! acknowledged leaves for the target as soon as the target can take it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use rewind_formats::frame::{restamp_version, FRAME_HEADER_LEN};
use rewind_formats::message::{
    Control, ControlOp, ErrorCode, Hello, HelloGroup, Message, ResumeStatus,
};
use rewind_formats::{Seq, FRAME_VERSION};
use tokio::io::{AsyncWriteExt, ReadHalf};

use rewind_formats::dedup::DedupWindow;

use super::bandwidth::Limiter;
use super::group::{RelayGroup, Upstream};
use super::log::{entry, Cursor, Entry};
use super::recompress::Optimise;
use super::upstream::{BoxStream, Shared};
use crate::server::framing::read_frame;

/// Waits between attempts: short after a session that worked, longer after failures, longest
/// after a refusal (a fenced group stays fenced).
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
const RETRY_REFUSED: Duration = Duration::from_secs(30);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(60);

/// How a session with the target ended.
enum End {
    /// Say HELLO again at once (the agent's generation changed, or it ended its session).
    Again,
    /// Refused: wait long before trying again.
    Refused,
}

pub(crate) fn spawn(
    g: Arc<RelayGroup>,
    up: Shared,
    metrics: Arc<super::metrics::Counters>,
    optimise: Optimise,
    limiter: Arc<Limiter>,
) {
    tokio::spawn(async move {
        let mut wait = RETRY_MIN;
        loop {
            if g.is_retired() {
                tracing::info!(group = %g.name, "forwarder of a dropped cache ends");
                return;
            }
            let r = session(&g, &up, &metrics, optimise, &limiter).await;
            wait = match r {
                Ok(End::Again) => RETRY_MIN,
                Ok(End::Refused) => RETRY_REFUSED,
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::warn!(group = %g.name, upstream = %up.label, error = %why, "upstream session ended; the cache keeps what arrives");
                    g.upstream.send_if_modified(|u| {
                        if matches!(u, Upstream::Refused { .. }) {
                            return false;
                        }
                        *u = Upstream::Unreachable(why.clone());
                        true
                    });
                    (wait * 2).min(RETRY_MAX)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = g.redo_hello.notified() => {}
            }
        }
    });
}

async fn session(
    g: &Arc<RelayGroup>,
    up: &Shared,
    metrics: &super::metrics::Counters,
    optimise: Optimise,
    limiter: &Limiter,
) -> Result<End> {
    let meta = g.meta.lock().expect("meta lock").clone();
    let stream = up.connect().await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let hello = Message::Hello(Hello {
        agent: meta.agent.clone(),
        software: Some(format!("relay-{}", env!("CARGO_PKG_VERSION"))),
        dedup_window: optimise.dedup_window,
        // The relay dedups and recompresses plain records: it never asks for framed ones.
        framed_records: false,
        groups: vec![HelloGroup {
            group: g.name.clone(),
            generation: meta.generation,
            last_acked: *g.target_durable.borrow(),
            epoch: meta.epoch,
            disks: meta.disk_infos(),
        }],
    });
    wr.write_all(&hello.to_frame()).await?;
    wr.flush().await?;
    let first = tokio::time::timeout(WELCOME_TIMEOUT, first_reply(&mut rd))
        .await
        .map_err(|_| anyhow!("no WELCOME within {} s", WELCOME_TIMEOUT.as_secs()))??;
    let w = match first {
        Message::Welcome(w) => w,
        Message::Error(e) => {
            tracing::warn!(group = %g.name, code = ?e.code, message = %e.message, "the master target refused the relay's HELLO: telling the agent");
            g.upstream.send_replace(Upstream::Refused {
                generation: meta.generation,
                code: e.code,
                message: e.message.clone(),
            });
            g.stop_agent(e.code, e.message);
            return Ok(End::Refused);
        }
        other => bail!("expected WELCOME, got {}", other.kind().name()),
    };
    let wg = w
        .groups
        .iter()
        .find(|x| x.group == g.name)
        .ok_or_else(|| anyhow!("the WELCOME does not name group {}", g.name))?;
    let durable = wg.durable;
    // The target keeps a window of what it granted; references never reach further back than
    // the smaller of the two. A window lives exactly as long as this session.
    let granted = w.dedup_window.min(optimise.dedup_window);
    let mut window = (granted > 0).then(|| DedupWindow::sender(granted));
    {
        if let Some(first) = first_batch_seq(g) {
            if first.0 > durable.0 + 1 {
                let why = format!(
                    "the master target holds group {} up to seq {durable} but the relay's cache \
                     starts at {first}: the target lost data the relay had already freed; the agent \
                     must resync",
                    g.name
                );
                g.upstream.send_replace(Upstream::Refused {
                    generation: meta.generation,
                    code: ErrorCode::SeqGap,
                    message: why.clone(),
                });
                g.stop_agent(ErrorCode::SeqGap, why);
                return Ok(End::Refused);
            }
        }
    }
    {
        let mut log = g.log.lock().expect("log lock");
        if log.segments.is_empty() {
            log.floor = log.floor.max(durable);
        }
    }
    g.target_durable.send_if_modified(|d| {
        let moved = durable > *d;
        *d = (*d).max(durable);
        moved
    });
    g.upstream.send_replace(Upstream::Welcomed {
        generation: meta.generation,
        durable,
        resync: wg.status == ResumeStatus::ResyncNeeded,
    });
    tracing::info!(group = %g.name, upstream = %up.label, durable = durable.0, dedup_window_blocks = granted, "upstream session started");

    let sent = Arc::new(AtomicU64::new(0));
    let start = {
        let log = g.log.lock().expect("log lock");
        log.segments.first().map_or(log.end, |s| s.base)
    };
    sent.store(start, Ordering::Relaxed);
    let reader = {
        let (g, sent) = (g.clone(), sent.clone());
        tokio::spawn(async move { read_upstream(g, rd, sent).await })
    };
    let reader = AbortOnDrop(reader);
    let mut cursor = Cursor::new(start);
    let mut synced = g.synced.subscribe();
    // Written since the last flush (over TLS the end of a frame may wait in rustls's buffer).
    let mut wrote = false;
    loop {
        if g.is_retired() {
            let _ = wr.shutdown().await;
            return Ok(End::Again);
        }
        // Out-of-band frames whose place in the stream has come.
        loop {
            let next = {
                let mut side = g.side.lock().expect("side lock");
                match side.front() {
                    Some(s) if s.after <= cursor.pos => side.pop_front(),
                    _ => None,
                }
            };
            let Some(s) = next else { break };
            let mut frame = s.frame;
            restamp(&mut frame);
            wr.write_all(&frame).await?;
            wrote = true;
            if s.ends {
                wr.flush().await?;
                let _ = wr.shutdown().await;
                return Ok(End::Again);
            }
        }
        let segments = g.log.lock().expect("log lock").segments.clone();
        let end = *synced.borrow_and_update();
        // Frames are read from the page cache of files just written: cheap enough inline.
        if let Some(mut frame) = cursor.next(&segments, end)? {
            let h = rewind_formats::frame::FrameHeader::decode(
                frame[..FRAME_HEADER_LEN].try_into().expect("header"),
            )?;
            let td = *g.target_durable.borrow();
            let e = entry(h.kind, h.version, &frame[FRAME_HEADER_LEN..]);
            let skip = match e {
                // The target has it (the agent's earlier session, or this relay's before a crash).
                Some(Entry::Batch { last, .. }) => last <= td,
                // A tag is followed in the stream by the batches after the seq it labels: if one
                // of those is durable, so is the tag. One at the durable seq itself is sent again
                // (a repeated tag is harmless; a lost failover tag is not).
                Some(Entry::Tag { seq }) => seq < td,
                None => bail!("a {} frame in the cache log", h.kind.name()),
            };
            if !skip {
                let is_batch = matches!(e, Some(Entry::Batch { .. }));
                if let Some(mut w) = window.take_if(|_| is_batch) {
                    let (f, level) = (frame, optimise.level);
                    let (out, w) = tokio::task::spawn_blocking(move || {
                        let out = super::recompress::dedup_frame(f, level, &mut w);
                        (out, w)
                    })
                    .await?;
                    let (f, stats) = out?;
                    frame = f;
                    window = Some(w);
                    metrics.dedup(stats.ref_blocks);
                } else if is_batch && optimise.level > 0 {
                    let (f, level) = (frame, optimise.level);
                    let (f, smaller) = tokio::task::spawn_blocking(move || {
                        let s = super::recompress::batch_frame(&f, level);
                        (f, s)
                    })
                    .await?;
                    frame = smaller?.unwrap_or(f);
                }
                restamp(&mut frame);
                limiter
                    .acquire(frame.len() as u64, g.behind_rpo_target())
                    .await;
                metrics.out(frame.len() as u64);
                wr.write_all(&frame).await?;
                wrote = true;
            }
            sent.store(cursor.pos, Ordering::Relaxed);
            continue;
        }
        if wrote {
            wr.flush().await?;
            wrote = false;
        }
        if reader.0.is_finished() {
            return Err(anyhow!("the master target closed the session"));
        }
        tokio::select! {
            r = synced.changed() => { r.map_err(|_| anyhow!("relay shutting down"))?; }
            _ = g.side_added.notified() => {}
            _ = g.redo_hello.notified() => {
                let _ = wr.shutdown().await;
                return Ok(End::Again);
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The target's answer to the relay's HELLO: a WELCOME, or an ERROR, which may come in the
/// oldest frame version when the target refuses before reading the HELLO (an untrusted relay).
async fn first_reply(rd: &mut ReadHalf<BoxStream>) -> Result<Message> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; FRAME_HEADER_LEN];
    rd.read_exact(&mut head).await?;
    let h = rewind_formats::frame::FrameHeader::decode(&head)?;
    if h.payload_len as usize > rewind_formats::frame::MAX_HELLO_PAYLOAD {
        bail!("a {} byte answer to HELLO", h.payload_len);
    }
    let mut payload = vec![0u8; h.payload_len as usize];
    rd.read_exact(&mut payload).await?;
    h.verify_payload(&payload)?;
    Ok(Message::decode_version(h.version, h.kind, &payload)?)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first batch seq the cache holds.
fn first_batch_seq(g: &RelayGroup) -> Option<Seq> {
    let log = g.log.lock().expect("log lock");
    let first = log.segments.first()?;
    let name = first.path.file_stem()?.to_str()?.parse::<u64>().ok()?;
    (first.last_seq.0 > 0).then_some(Seq(name))
}

/// A drain or tag request while no agent is connected to the relay: answered as the agent
/// would answer one it cannot do, so that whoever asked learns why at once instead of waiting
/// for a timeout (a refused drain ends the session, as an agent's refusal does; a refused tag
/// does not).
fn no_agent(g: &RelayGroup, c: &Control) {
    let why = format!("no agent is connected to the relay for group {}", g.name);
    let (message, ends) = match c.op {
        ControlOp::Drain => (format!("drain: {why}"), true),
        ControlOp::TagRequest => (
            format!(
                "{}{}: {}: {why}",
                rewind_formats::message::TAG_REFUSED_PREFIX,
                g.name,
                c.arg
            ),
            false,
        ),
        _ => return,
    };
    let frame = Message::Error(rewind_formats::message::ErrorMsg {
        code: ErrorCode::Busy,
        message,
    })
    .to_frame();
    g.side(frame, ends, g.end());
}

/// Upstream frames carry this build's frame version (the relay's HELLO's).
fn restamp(frame: &mut [u8]) {
    if u16::from_le_bytes([frame[4], frame[5]]) != FRAME_VERSION {
        restamp_version(frame, FRAME_VERSION);
    }
}

/// What the target sends on the relay's session: ACKs (free the cache, tell the agent),
/// CONTROL and HASHES (to the agent), ERROR (to the agent, ending its session).
async fn read_upstream(g: Arc<RelayGroup>, mut rd: ReadHalf<BoxStream>, sent: Arc<AtomicU64>) {
    let mut payload = Vec::new();
    loop {
        let (kind, len) = match read_frame(&mut rd, &mut payload, FRAME_VERSION).await {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(group = %g.name, error = %e, "upstream session: read ended");
                return;
            }
        };
        let p = &payload[..len];
        let msg = match Message::decode(kind, p) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group = %g.name, error = %e, "a bad frame from the master target");
                return;
            }
        };
        match msg {
            Message::Ack(a) => {
                if let Err(e) = g.target_acked(a.durable, sent.load(Ordering::Relaxed)) {
                    tracing::error!(group = %g.name, error = format!("{e:#}"), "cannot free cache segments");
                }
                super::durable::tell_agent(&g, a.durable).await;
            }
            Message::Control(c) => {
                if c.op == ControlOp::Policy {
                    // Sent by the target when a session starts: kept for the agent's next one,
                    // and its RPO target for the bandwidth limit's priority.
                    *g.policy.lock().expect("policy lock") =
                        Some(Control::frame(&c.group, c.op, &c.arg));
                    if let Ok(p) = rewind_formats::policy::Policy::from_control_arg(&c.arg) {
                        g.rpo_target_secs
                            .store(p.rpo_target_secs, Ordering::Relaxed);
                    }
                }
                if !g.to_agent(Message::Control(c.clone()).to_frame()).await {
                    tracing::warn!(group = %g.name, op = ?c.op, "a CONTROL from the master target, but no agent is connected to the relay");
                    no_agent(&g, &c);
                }
            }
            Message::Hashes(h) => {
                g.to_agent(Message::Hashes(h).to_frame()).await;
            }
            Message::Error(e) => {
                tracing::warn!(group = %g.name, code = ?e.code, message = %e.message, "the master target ended the relay's session: telling the agent");
                if matches!(
                    e.code,
                    ErrorCode::Fenced | ErrorCode::StaleGeneration | ErrorCode::Forbidden
                ) {
                    let generation = g.meta.lock().expect("meta lock").generation;
                    g.upstream.send_replace(Upstream::Refused {
                        generation,
                        code: e.code,
                        message: e.message.clone(),
                    });
                }
                g.stop_agent(e.code, e.message);
                return;
            }
            other => {
                tracing::warn!(group = %g.name, kind = %other.kind().name(), "an unexpected frame from the master target");
                return;
            }
        }
    }
}
