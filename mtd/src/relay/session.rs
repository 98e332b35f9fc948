//! One agent session at the relay: the same protocol as at the master target. HELLO is answered
//! with a WELCOME that resumes after what the relay holds (in its cache or known durable at the
//! target); BATCH and TAG frames are checked, appended to the group's cache log and acknowledged
//! once synced there; HASHES, reports and refusals go upstream in their place in the stream; what
//! the target sends back comes down through the group (see `forward`).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rewind_formats::frame::{encode_frame, FrameKind};
use rewind_formats::message::{
    Ack, BatchRef, ControlOp, ErrorCode, ErrorMsg, Message, ResumeStatus, Welcome, WelcomeGroup,
};
use rewind_formats::Seq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::group::{AgentLink, RelayGroup, Upstream};
use super::log::Entry;
use super::writer::Append;
use super::Relay;
use crate::server::frame_sender;
use crate::server::framing::{read_frame, read_hello, ReadError};
use crate::server::registry::StopSignal;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a HELLO waits for the relay's own session with the target to say where the group
/// stands, before the relay answers from what it knows itself.
const UPSTREAM_WAIT: Duration = Duration::from_secs(5);
const CLOSE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) code: Option<ErrorCode>,
    pub(crate) message: String,
}

pub(crate) fn refuse(code: ErrorCode, message: impl Into<String>) -> Fault {
    Fault {
        code: Some(code),
        message: message.into(),
    }
}

impl From<ReadError> for Fault {
    fn from(e: ReadError) -> Fault {
        Fault {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Serve one agent connection; `identity` is the agent name its certificate proves (None on a
/// unix socket or an `--insecure` listener).
pub(crate) async fn run<S>(relay: Arc<Relay>, stream: S, peer: String, identity: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let (out_tx, version, sender) = frame_sender::start(wr);
    let stop = Arc::new(StopSignal::default());
    let id = relay.next_session();
    let mut held: Vec<Arc<RelayGroup>> = Vec::new();
    let result = serve(
        &relay,
        &mut rd,
        &out_tx,
        &version,
        &stop,
        id,
        &peer,
        identity.as_deref(),
        &mut held,
    )
    .await;
    for g in &held {
        let mut a = g.agent.lock().expect("agent lock");
        if a.as_ref().is_some_and(|l| l.id == id) {
            *a = None;
        }
    }
    match result {
        Ok(()) => tracing::info!(%peer, "agent session closed by the agent"),
        Err(f) => {
            tracing::warn!(%peer, code = ?f.code, "closing agent session: {}", f.message);
            if let Some(code) = f.code {
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
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), sender).await;
}

/// One group of the session: where its next batch must start.
struct Fed {
    g: Arc<RelayGroup>,
    generation: u64,
    next_seq: Seq,
}

#[allow(clippy::too_many_arguments)]
async fn serve<R: AsyncRead + Unpin>(
    relay: &Arc<Relay>,
    rd: &mut R,
    out: &mpsc::Sender<Vec<u8>>,
    version: &AtomicU16,
    stop: &Arc<StopSignal>,
    id: u64,
    peer: &str,
    identity: Option<&str>,
    held: &mut Vec<Arc<RelayGroup>>,
) -> Result<(), Fault> {
    let (hello, wire_version) = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(rd)).await {
        Err(_) => return Err(refuse(ErrorCode::Protocol, "no HELLO in time")),
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
    version.store(wire_version, Ordering::Relaxed);
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
    if hello.groups.is_empty() {
        return Err(refuse(ErrorCode::Protocol, "HELLO names no group"));
    }
    let mut groups = Vec::new();
    for hg in &hello.groups {
        groups.push(
            relay
                .group_for(&hello.agent, hg)
                .map_err(|(c, m)| refuse(c, m))?,
        );
    }
    // This session feeds the groups from now on; an older one of the same agent ends.
    let link = AgentLink {
        id,
        out: out.clone(),
        stop: stop.clone(),
    };
    for g in &groups {
        let old = g.agent.lock().expect("agent lock").replace(link.clone());
        if let Some(old) = old {
            old.stop.stop(
                ErrorCode::Busy,
                "superseded by a newer session of the same agent".into(),
            );
        }
        held.push(g.clone());
    }
    let mut fed = Vec::new();
    let mut welcome = Vec::new();
    for (hg, g) in hello.groups.iter().zip(&groups) {
        let generation = g.meta.lock().expect("meta lock").generation;
        let up = upstream_state(g, generation).await;
        if let Upstream::Refused { code, message, .. } = &up {
            return Err(refuse(*code, message.clone()));
        }
        let holds = g.holds();
        let welcomed = matches!(up, Upstream::Welcomed { .. });
        if !welcomed && hg.last_acked > holds {
            return Err(refuse(
                ErrorCode::Busy,
                format!(
                    "the relay cannot reach the master target and holds group {} only up to seq {holds} \
                     (the agent was acknowledged {}): try again once it can",
                    hg.group, hg.last_acked
                ),
            ));
        }
        let target_resync =
            matches!(up, Upstream::Welcomed { resync: true, .. }) && g.cache_empty();
        let status = if target_resync || hg.last_acked > holds {
            ResumeStatus::ResyncNeeded
        } else {
            ResumeStatus::Resume
        };
        welcome.push(WelcomeGroup {
            group: hg.group.clone(),
            generation,
            status,
            durable: holds,
        });
        fed.push(Fed {
            g: g.clone(),
            generation,
            next_seq: Seq(holds.0 + 1),
        });
    }
    tracing::info!(%peer, agent = %hello.agent, groups = fed.len(), "agent session started at the relay");
    let send = |f: Vec<u8>| async move { out.send(f).await.map_err(|_| gone()) };
    // The relay resolves no references in what it caches: agents get no dedup window.
    let welcome = Welcome {
        groups: welcome,
        dedup_window: 0,
        framed_records: false,
    };
    // In the HELLO's version (WELCOME's payload differs between versions).
    send(Message::Welcome(welcome).to_frame_version(wire_version)).await?;
    for f in &fed {
        let td = *f.g.target_durable.borrow();
        send(super::durable::frame(&f.g.name, td)).await?;
        let policy = f.g.policy.lock().expect("policy lock").clone();
        if let Some(p) = policy {
            send(p).await?;
        }
    }
    let _acks = Tasks(
        fed.iter()
            .map(|f| spawn_acks(f.g.clone(), Seq(f.next_seq.0 - 1), out.clone()))
            .collect(),
    );
    let mut payload = Vec::new();
    loop {
        let frame = tokio::select! {
            r = read_frame(rd, &mut payload, wire_version) => r,
            (code, why) = stop.stopped() => return Err(refuse(code, why)),
        };
        let (kind, len) = match frame {
            Ok(f) => f,
            Err(ReadError::Closed) => {
                // Close once everything the agent sent is synced, as the target does.
                for f in &fed {
                    let want = Seq(f.next_seq.0 - 1);
                    let mut rx = f.g.relay_durable.subscribe();
                    let _ =
                        tokio::time::timeout(CLOSE_SYNC_TIMEOUT, rx.wait_for(|d| *d >= want)).await;
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let p = &payload[..len];
        match kind {
            FrameKind::Batch => {
                let b = BatchRef::decode(p).map_err(ReadError::from)?;
                let f = find(&mut fed, &b.group)?;
                if b.generation != f.generation {
                    return Err(refuse(
                        ErrorCode::StaleGeneration,
                        format!(
                            "batch for group {} has generation {}; the session is at {}",
                            b.group, b.generation, f.generation
                        ),
                    ));
                }
                if b.first_seq != f.next_seq {
                    return Err(refuse(
                        ErrorCode::SeqGap,
                        format!(
                            "batch for group {} starts at seq {}; expected {}",
                            b.group, b.first_seq, f.next_seq
                        ),
                    ));
                }
                let last = Seq(b.first_seq.0 + u64::from(b.record_count) - 1);
                let frame = encode_frame(kind, p);
                cache(
                    relay,
                    f,
                    frame,
                    Entry::Batch {
                        first: b.first_seq,
                        last,
                    },
                )
                .await?;
                f.next_seq = Seq(last.0 + 1);
            }
            FrameKind::Tag => {
                let t = match Message::decode_version(wire_version, kind, p)
                    .map_err(ReadError::from)?
                {
                    Message::Tag(t) => t,
                    _ => unreachable!("a TAG frame decodes to a TAG"),
                };
                let f = find(&mut fed, &t.group)?;
                if t.generation != f.generation {
                    return Err(refuse(
                        ErrorCode::StaleGeneration,
                        format!("tag for group {} has generation {}", t.group, t.generation),
                    ));
                }
                if t.tag.seq.0 == 0 || t.tag.seq >= f.next_seq {
                    return Err(refuse(
                        ErrorCode::SeqGap,
                        format!(
                            "tag {} of group {} labels seq {}, which has not been sent (next is {})",
                            t.tag.name, t.group, t.tag.seq, f.next_seq
                        ),
                    ));
                }
                let seq = t.tag.seq;
                cache(relay, f, encode_frame(kind, p), Entry::Tag { seq }).await?;
            }
            _ => {
                let m = Message::decode_version(wire_version, kind, p).map_err(ReadError::from)?;
                let (group, ends) = match &m {
                    Message::Hashes(h) => (h.group.clone(), false),
                    Message::Control(c)
                        if matches!(c.op, ControlOp::Report | ControlOp::VerifyReport) =>
                    {
                        (c.group.clone(), false)
                    }
                    Message::Error(e) => (error_group(&e.message, &fed), e.ends_session()),
                    other => {
                        return Err(refuse(
                            ErrorCode::Protocol,
                            format!("unexpected {} frame from an agent", other.kind().name()),
                        ))
                    }
                };
                // An ERROR that ends the session names no group: it ends every upstream session
                // of this agent's groups, as it would have ended its session at the target.
                if !group.is_empty() {
                    find(&mut fed, &group)?;
                }
                let targets = fed.iter().filter(|f| group.is_empty() || f.g.name == group);
                for f in targets {
                    f.g.side(encode_frame(kind, p), ends, f.g.end());
                }
                if ends {
                    if let Message::Error(e) = m {
                        return Err(Fault {
                            code: None,
                            message: format!("agent reported {:?}: {}", e.code, e.message),
                        });
                    }
                }
            }
        }
    }
}

/// The group a non-ending ERROR is about (`policy refused: GROUP: why`, `tag refused: GROUP:
/// ...`); empty when it names none of the session's groups.
fn error_group(message: &str, fed: &[Fed]) -> String {
    let rest = message
        .strip_prefix(rewind_formats::policy::REFUSED_PREFIX)
        .or_else(|| message.strip_prefix(rewind_formats::message::TAG_REFUSED_PREFIX));
    match rest.and_then(|r| r.split(": ").next()) {
        Some(g) if fed.iter().any(|f| f.g.name == g) => g.to_string(),
        _ => String::new(),
    }
}

/// Append a frame to the group's cache once it has room (a full cache stops reading from the
/// agent: no more ACKs, so the agent spools).
async fn cache(relay: &Relay, f: &Fed, frame: Vec<u8>, entry: Entry) -> Result<(), Fault> {
    let n = frame.len() as u64;
    relay
        .space
        .take(n, || {
            relay.metrics.full();
            tracing::warn!(group = %f.g.name, used = relay.space.used(), limit = relay.space.limit(),
                "the relay's cache is full: the agent waits (it spools, then tracks dirty blocks) until the master target takes some");
        })
        .await;
    relay.metrics.in_(n);
    f.g.append(Append { frame, entry })
        .await
        .map_err(|why| refuse(ErrorCode::StoreFailed, format!("the relay's cache: {why}")))
}

fn find<'a>(fed: &'a mut [Fed], group: &str) -> Result<&'a mut Fed, Fault> {
    fed.iter_mut().find(|f| f.g.name == group).ok_or_else(|| {
        refuse(
            ErrorCode::UnknownGroup,
            format!("group {group} is not part of this session"),
        )
    })
}

fn gone() -> Fault {
    Fault {
        code: None,
        message: "peer went away".into(),
    }
}

/// How the group's upstream session stands for `generation`, waiting a little for a first answer.
async fn upstream_state(g: &RelayGroup, generation: u64) -> Upstream {
    let mut rx = g.upstream.subscribe();
    let decided = |u: &Upstream| match u {
        Upstream::Welcomed { generation: x, .. } | Upstream::Refused { generation: x, .. } => {
            *x == generation
        }
        _ => false,
    };
    let got = match tokio::time::timeout(UPSTREAM_WAIT, rx.wait_for(decided)).await {
        Ok(Ok(u)) => Some(u.clone()),
        _ => None,
    };
    match got {
        Some(u) => u,
        None => {
            let u = g.upstream.borrow().clone();
            match u {
                // A refusal or welcome for another generation says nothing about this one.
                Upstream::Refused { .. } | Upstream::Welcomed { .. } => {
                    Upstream::Unreachable("no answer for this generation yet".into())
                }
                other => other,
            }
        }
    }
}

/// Send an ACK whenever the group's cache-durable seq moves past what this session acknowledged.
fn spawn_acks(g: Arc<RelayGroup>, acked: Seq, out: mpsc::Sender<Vec<u8>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = g.relay_durable.subscribe();
        let mut acked = acked;
        loop {
            let durable = *rx.borrow_and_update();
            if durable > acked {
                acked = durable;
                let ack = Message::Ack(Ack {
                    group: g.name.clone(),
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
