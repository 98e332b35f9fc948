//! One agent session: HELLO/WELCOME, then batches and tags in, ACKs out.
//!
//! Every batch is checked completely (generation, seq continuity, checksums, decompression, every
//! record's disk and bounds) before anything of it goes to the writer, so a bad batch applies nothing.
//! ACKs are driven by the group's durable seq, which the writer advances only after fdatasync.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::agent_report::AgentReport;
use rewind_formats::frame::FrameKind;
use rewind_formats::message::{
    Ack, BatchRef, ControlOp, ErrorCode, ErrorMsg, Hashes, Message, TAG_REFUSED_PREFIX,
};
use rewind_formats::policy::REFUSED_PREFIX;
use rewind_formats::Seq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::frame_sender;
use super::framing::{read_frame, read_hello, ReadError};
use super::ingest::find;
use super::refusal::Refusal;
use super::registry::{SessionEnd, SessionLink, StopSignal};
use crate::store::group::Group;
use crate::store::quota::Quotas;
use crate::store::Store;

/// A connection that has not sent a valid HELLO by then is closed: until it does, it is nobody,
/// and it holds a descriptor and a slot of the listener's connection cap.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a session ended early; `code` is sent to the peer in an ERROR frame when there is one.
#[derive(Debug)]
struct Fault {
    code: Option<ErrorCode>,
    message: String,
    /// The agent ended the session with an ERROR frame; `message` carries its text.
    by_agent: bool,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Fault {
    Fault {
        code: Some(code),
        message: message.into(),
        by_agent: false,
    }
}

impl From<Refusal> for Fault {
    fn from(r: Refusal) -> Fault {
        refuse(r.code, r.message)
    }
}

impl From<ReadError> for Fault {
    fn from(e: ReadError) -> Fault {
        Fault {
            code: e.code(),
            message: e.to_string(),
            by_agent: false,
        }
    }
}

/// Aborts the ACK tasks when the session ends.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Serve one agent connection. `identity` is the agent name its TLS certificate proves (None on
/// a unix socket or an `--insecure` loopback listener, where the HELLO's name is taken as given).
pub(crate) async fn run<S>(
    store: Arc<Store>,
    quotas: Arc<Quotas>,
    stream: S,
    peer: String,
    identity: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    // Every frame goes out in the version of the agent's HELLO (see `frame_sender`).
    let (out_tx, version, sender) = frame_sender::start(wr);
    // Whoever waits on this session (a drain) learns here that it ended, and why.
    let (ended_tx, ended_rx) = watch::channel(None);
    let session = SessionLink {
        out: out_tx.clone(),
        ended: ended_rx,
    };
    let mut fed_groups = Served {
        version,
        ..Served::default()
    };
    let result = serve(
        &store,
        &quotas,
        &mut rd,
        &session,
        &peer,
        identity.as_deref(),
        &mut fed_groups,
    )
    .await;
    let end = match &result {
        Ok(()) => SessionEnd {
            message: "the agent closed the session".into(),
            by_agent: false,
        },
        Err(f) => SessionEnd {
            message: f.message.clone(),
            by_agent: f.by_agent,
        },
    };
    // The refusal's code, so the site can count checksum and fencing refusals by kind.
    let code = result
        .as_ref()
        .err()
        .and_then(|f| f.code)
        .map(|c| format!("{c:?}"));
    for g in &fed_groups.groups {
        store.events.emit(
            "group.disconnected",
            Some(g),
            serde_json::json!({ "agent": fed_groups.agent, "host": peer, "reason": end.message, "code": code }),
        );
    }
    if fed_groups.groups.is_empty() && code.is_some() {
        // Refused at HELLO (a fenced agent still trying, a stale generation): no session began,
        // but whoever watches needs to see the attempts.
        for g in &fed_groups.asked {
            store.events.emit(
                "session.refused",
                Some(g),
                serde_json::json!({ "agent": fed_groups.agent, "host": peer, "reason": end.message, "code": code }),
            );
        }
    }
    ended_tx.send_replace(Some(end));
    match result {
        Ok(()) => tracing::info!(%peer, "session closed by peer"),
        Err(f) => {
            tracing::warn!(%peer, code = ?f.code, "closing session: {}", f.message);
            if let Some(code) = f.code {
                crate::metrics::frames::rejected(code);
                let _ = out_tx
                    .send(
                        Message::Error(ErrorMsg {
                            code,
                            message: f.message,
                        })
                        .to_frame(),
                    )
                    .await;
            }
        }
    }
    // The writer task ends once every sender of its channel is gone.
    drop(session);
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), sender).await;
}

/// What a session learned and served: its agent and groups (for its `group.disconnected`
/// events), and the frame version it speaks.
#[derive(Default)]
struct Served {
    agent: String,
    groups: Vec<String>,
    /// The groups the HELLO named (for `session.refused` when admission fails).
    asked: Vec<String>,
    /// The frame version the session's writer stamps on what it sends: the HELLO's, once read.
    version: Arc<AtomicU16>,
}

async fn serve<R: AsyncRead + Unpin>(
    store: &Arc<Store>,
    quotas: &Quotas,
    rd: &mut R,
    session: &SessionLink,
    peer: &str,
    identity: Option<&str>,
    fed_groups: &mut Served,
) -> Result<(), Fault> {
    let out = &session.out;
    let (hello, wire_version) = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(rd)).await {
        Err(_) => {
            return Err(refuse(
                ErrorCode::Protocol,
                format!("no HELLO within {} s", HELLO_TIMEOUT.as_secs()),
            ))
        }
        Ok(Err(ReadError::Closed)) => return Ok(()),
        Ok(r) => match r? {
            (Message::Hello(h), v) => (h, v),
            (other, _) => {
                return Err(refuse(
                    ErrorCode::Protocol,
                    format!("expected HELLO, got {}", other.kind().name()),
                ))
            }
        },
    };
    fed_groups.version.store(wire_version, Ordering::Relaxed);
    fed_groups.agent = hello.agent.clone();
    fed_groups.asked = hello.groups.iter().map(|g| g.group.clone()).collect();
    if let Some(id) = identity {
        if hello.agent != id {
            return Err(refuse(
                ErrorCode::Forbidden,
                format!(
                    "the certificate is for agent {id} but the HELLO says {}",
                    hello.agent
                ),
            ));
        }
    }
    let stop = Arc::new(StopSignal::default());
    let admitted = super::admission::admit(store, quotas, &hello, peer, &stop, session).await?;
    let (fed, _claims) = (admitted.fed, admitted.claims);
    let framed = admitted.welcome.framed_records;
    let software = hello.software.as_deref();
    tracing::info!(%peer, agent = %hello.agent, software, wire_version, framed, groups = fed.len(), "session started");
    // In the HELLO's version: WELCOME's payload differs between versions (version 3's dedup
    // window), so it cannot be written in this build's and restamped as other frames are.
    out.send(Message::Welcome(admitted.welcome).to_frame_version(wire_version))
        .await
        .map_err(|_| closed())?;
    fed_groups.agent = hello.agent.clone();
    for f in &fed {
        fed_groups.groups.push(f.group.name.clone());
        // The agent's software version (null from a version 1 HELLO, which has none).
        store.events.emit(
            "group.connected",
            Some(&f.group.name),
            serde_json::json!({ "agent": hello.agent, "host": peer, "version": software }),
        );
    }
    // A failed planned failover left the agent drained while it was away: writes again.
    for f in &fed {
        if let Some(tag) = f.group.take_resume_owed() {
            tracing::info!(group = %f.group.name, "telling the agent to resume writes after a failed drain");
            let resume =
                rewind_formats::message::Control::frame(&f.group.name, ControlOp::Resume, &tag);
            out.send(resume).await.map_err(|_| closed())?;
        }
    }
    for f in &fed {
        super::policy::send(store, &f.group, out).await;
    }
    let _acks = Tasks(
        fed.iter()
            .map(|f| spawn_acks(f.group.clone(), f.next_seq, out.clone()))
            .collect(),
    );
    let mut fed = fed;
    let mut payload = Vec::new();

    loop {
        if let Some(why) = store.health.failed() {
            return Err(refuse(ErrorCode::StoreFailed, why));
        }
        let frame = tokio::select! {
            r = read_frame(rd, &mut payload, wire_version) => r,
            (code, why) = stop.stopped() => return Err(refuse(code, why)),
        };
        let (kind, len) = match frame {
            Ok(frame) => frame,
            Err(ReadError::Closed) => {
                // Close only once everything this agent sent is durable, so that seeing the
                // close tells it its trailing tags are safe.
                for f in &fed {
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, f.group.drained()).await;
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let payload = &payload[..len];
        if kind == FrameKind::Batch {
            // Batches are decoded in place: their records are read straight from the payload.
            let b = BatchRef::decode(payload).map_err(ReadError::from)?;
            find(&mut fed, &b.group)?
                .batch_in(store, &b, quotas, framed)
                .await?;
            continue;
        }
        match Message::decode_version(wire_version, kind, payload).map_err(ReadError::from)? {
            Message::Tag(t) => {
                find(&mut fed, &t.group)?.tag(store, &t).await?;
                tag_event(store, &t);
            }
            Message::Hashes(h) => {
                let f = find(&mut fed, &h.group)?;
                let group = f.group.clone();
                // Answer as of everything this agent has sent so far.
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, group.drained()).await;
                let reply = tokio::task::spawn_blocking(move || target_hashes(group, &h))
                    .await
                    .map_err(|e| refuse(ErrorCode::Internal, e.to_string()))??;
                out.send(Message::Hashes(reply).to_frame())
                    .await
                    .map_err(|_| closed())?;
            }
            Message::Control(c) if c.op == ControlOp::Report => {
                let f = find(&mut fed, &c.group)?;
                agent_report(store, &f.group, &c.arg);
            }
            Message::Control(c) if c.op == ControlOp::VerifyReport => {
                find(&mut fed, &c.group)?;
                crate::verify::registry::deliver(&c.group, &c.arg);
            }
            Message::Error(e) if e.message.starts_with(REFUSED_PREFIX) => {
                policy_refused(store, &fed, &e.message);
            }
            Message::Error(e) if e.message.starts_with(TAG_REFUSED_PREFIX) => {
                tag_refused(&fed, &e.message);
            }
            Message::Error(e) => {
                return Err(Fault {
                    code: None,
                    message: format!("agent reported {:?}: {}", e.code, e.message),
                    by_agent: true,
                });
            }
            other => {
                return Err(refuse(
                    ErrorCode::Protocol,
                    format!("unexpected {} frame from an agent", other.kind().name()),
                ));
            }
        }
    }
}

/// The agent could not insert the tag a tag request asked for (`tag refused: GROUP: NAME: why`):
/// told to the request's waiter; the session goes on.
fn tag_refused(fed: &[super::ingest::Feed], message: &str) {
    let rest = &message[TAG_REFUSED_PREFIX.len()..];
    let mut parts = rest.splitn(3, ": ");
    let (group, tag, why) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(rest),
    );
    match fed.iter().find(|f| f.group.name == group) {
        Some(f) => {
            tracing::warn!(group, tag, why, "the agent refused a tag request");
            f.group.tag_refused(tag, why);
        }
        None => tracing::warn!(
            message,
            "the agent refused a tag request for a group it does not feed here"
        ),
    }
}

/// The agent could not apply the policy it was sent (`policy refused: GROUP: why`): recorded on
/// the group, shown by `GET /v1/groups`; the session goes on with what the agent ran before.
fn policy_refused(store: &Store, fed: &[super::ingest::Feed], message: &str) {
    let rest = &message[REFUSED_PREFIX.len()..];
    let (group, why) = rest.split_once(": ").unwrap_or(("", rest));
    let Some(f) = fed.iter().find(|f| f.group.name == group) else {
        tracing::warn!(
            message,
            "the agent refused a policy for a group it does not feed here"
        );
        return;
    };
    tracing::warn!(group, why, "the agent cannot apply the policy");
    f.group.policy_refused(why.to_string());
    store.events.emit(
        "policy.refused",
        Some(group),
        serde_json::json!({ "reason": why }),
    );
}

/// A tag's event: a resync's start or end, or a recovery point.
/// Keeps the agent's report on a group (CONTROL op report), and tells whoever watches when its
/// mode changed. A report with impossible numbers is dropped and logged: it is the agent's view,
/// not the target's data, so the session goes on.
fn agent_report(store: &Store, group: &Group, arg: &str) {
    let r = match AgentReport::parse(arg) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(group = %group.name, %why, "dropping the agent's report");
            return;
        }
    };
    let mode = r.mode;
    let rpo = r.rpo_seconds;
    let before = group.agent_reported(r);
    if before != Some(mode) {
        tracing::info!(group = %group.name, mode = mode.as_str(), "agent reports a new mode");
        store.events.emit(
            "agent.mode",
            Some(&group.name),
            serde_json::json!({
                "mode": mode.as_str(),
                "was": before.map(|m| m.as_str()),
                "rpo_seconds": rpo,
            }),
        );
    }
}

fn tag_event(store: &Store, t: &rewind_formats::message::Tag) {
    use rewind_formats::TagKind;
    let kind = match t.tag.kind {
        TagKind::SyncBegin => "sync.started",
        TagKind::SyncEnd => "sync.finished",
        _ => "point.tagged",
    };
    store.events.emit(
        kind,
        Some(&t.group),
        serde_json::json!({ "seq": t.tag.seq.0, "name": t.tag.name, "tag_kind": t.tag.kind }),
    );
}

fn closed() -> Fault {
    Fault {
        code: None,
        message: "peer went away".into(),
        by_agent: false,
    }
}

/// The most bytes one HASHES request may cover: the target reads all of them to answer.
const MAX_HASHES_SPAN: u64 = 64 << 20;

/// The target's hashes of the range an agent's HASHES names (resync: the agent then sends the
/// blocks whose hashes differ).
fn target_hashes(group: Arc<Group>, h: &Hashes) -> Result<Hashes, Fault> {
    let bad = |why: String| {
        refuse(
            ErrorCode::OutOfRange,
            format!("HASHES for group {} disk {}: {why}", h.group, h.disk),
        )
    };
    let (size, durable) = group
        .disk_size_at_durable(h.disk as usize)
        .ok_or_else(|| bad("no such disk".into()))?;
    let bs = h.block_size as u64;
    let span = bs * h.hashes.len() as u64;
    if h.hashes.is_empty() || span > MAX_HASHES_SPAN {
        return Err(bad(format!(
            "{} blocks of {bs} bytes (want 1 block up to {MAX_HASHES_SPAN} bytes)",
            h.hashes.len()
        )));
    }
    if h.offset.checked_add(span).is_none_or(|end| end > size) {
        return Err(bad(format!(
            "offset {} + {span} bytes is past the end ({size} bytes)",
            h.offset
        )));
    }
    // The newest state as it is, even mid-resync (when it is not a recoverable point): that is
    // exactly what the resync compares against.
    let view = crate::views::view::View::new(group, h.disk as usize, durable)
        .map_err(|e| refuse(ErrorCode::StoreFailed, e.to_string()))?;
    let mut buf = vec![0u8; span as usize];
    let hashes = match view.read_at(&mut buf, h.offset) {
        Ok(()) => buf
            .chunks(bs as usize)
            .map(rewind_formats::hash::block_hash)
            .collect(),
        // A block this target cannot read (an IO error in a segment or the base) gets a hash no
        // block has, so the agent sees it differ: a resync resends it (a newer record then
        // shadows the bad one) and a verify reports it. Ending the session instead would stop
        // replication over one bad block, and the next resync would hit it again.
        Err(e) => {
            tracing::error!(group = %h.group, disk = h.disk, offset = h.offset, error = %e,
                "cannot read the range a HASHES asks for: answering its unreadable blocks as differing");
            buf.chunks_mut(bs as usize)
                .enumerate()
                .map(|(i, b)| match view.read_at(b, h.offset + i as u64 * bs) {
                    Ok(()) => rewind_formats::hash::block_hash(b),
                    Err(_) => UNREADABLE_HASH,
                })
                .collect()
        }
    };
    Ok(Hashes {
        group: h.group.clone(),
        disk: h.disk,
        offset: h.offset,
        block_size: h.block_size,
        hashes,
    })
}

/// The hash an unreadable block is answered with: no real block is expected to hash to it (a
/// 2^-64 chance), and the agent only compares hashes.
const UNREADABLE_HASH: u64 = 0;

/// Send an ACK whenever the group's durable seq moves past what this session last acknowledged.
fn spawn_acks(group: Arc<Group>, next_seq: Seq, out: mpsc::Sender<Vec<u8>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = group.subscribe_durable();
        let mut acked = Seq(next_seq.0 - 1);
        loop {
            let durable = *rx.borrow_and_update();
            if durable > acked {
                acked = durable;
                let ack = Message::Ack(Ack {
                    group: group.name.clone(),
                    durable,
                });
                if out.send(ack.to_frame()).await.is_err() {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}
