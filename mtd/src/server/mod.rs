//! The agent-facing server: TCP and unix-socket listeners feeding sessions.
//!
//! Everything that speaks the agent protocol lives here, and the store below speaks none of it:
//! `admission` turns a HELLO into a typed request to the store and claims the groups,
//! `ingest` checks each batch and tag and keeps where the next batch must start, `registry`
//! knows which session feeds which group (and sends it CONTROL frames), and `refusal` is the
//! one place where the store's typed errors become wire error codes.

pub mod admission;
pub(crate) mod drain;
pub(crate) mod frame_sender;
pub(crate) mod framing;
pub mod ingest;
pub(crate) mod policy;
mod refusal;
pub(crate) mod registry;
mod session;
#[cfg(test)]
pub(crate) mod testing;

pub use refusal::Refusal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rewind_formats::message::{ErrorCode, ErrorMsg, Message};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::LocalAccess;
use crate::listen::Acceptor;
use crate::store::quota::Quotas;
use crate::store::Store;

/// How long sent data may stay unacknowledged before a session's socket gives up on its peer.
const DEAD_PEER_AFTER: Duration = Duration::from_secs(30);

pub struct AgentListeners {
    /// TCP address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: Option<String>,
    pub unix: Option<PathBuf>,
    /// Mutual TLS on the TCP listener (`rewind-mtd ca init` makes the files).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Plain TCP without TLS, for tests only: allowed only on a loopback address, and then any
    /// local user can claim to be any agent.
    pub insecure: bool,
    /// Besides root, the uids that may speak for agents on the unix socket (`--agent-uid`).
    /// Members of the access group that are not one of them are refused: the socket's mode lets
    /// them connect (the group also serves NBD and the control API), but the HELLO's agent name
    /// is all that identifies an agent there, so only trusted uids may say one.
    pub agent_uids: Vec<u32>,
    /// Relays (by certificate name) that may speak for the agents they relay (`--trusted-relay`).
    pub trusted_relays: Vec<String>,
    /// Open connections per listener (`--max-agent-conns`); more are closed at once.
    pub max_conns: usize,
    /// What one agent may make the target hold.
    pub quotas: Quotas,
}

/// Default of `--max-agent-conns`.
pub const DEFAULT_MAX_CONNS: usize = 1024;

/// A TLS handshake that has not finished by then is dropped (a stalled peer holds nothing).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the agent listeners and accept sessions in the background. Returns the bound addresses
/// (`HOST:PORT`, `unix:PATH`).
pub(crate) async fn start(
    store: Arc<Store>,
    opts: &AgentListeners,
    access: &LocalAccess,
) -> Result<Vec<String>> {
    let mut ready = Vec::new();
    let quotas = Arc::new(opts.quotas.clone());
    if let Some(addr) = &opts.listen {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = l.local_addr()?;
        if opts.tls.is_none() && !(opts.insecure && local.ip().is_loopback()) {
            anyhow::bail!(
                "refusing plain TCP for agents on {local}: give --tls-dir (made by `rewind-mtd ca init`), or --insecure on a loopback address"
            );
        }
        if opts.tls.is_none() {
            tracing::warn!(%local, "--insecure: plain TCP for agents, FOR TESTS ONLY: any local user can connect and claim to be any agent");
        }
        let tls = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        tracing::info!(%local, tls = tls.is_some(), "listening for agents on TCP");
        ready.push(local.to_string());
        let store = store.clone();
        let quotas = quotas.clone();
        let slots = Arc::new(Semaphore::new(opts.max_conns));
        let relays = Arc::new(opts.trusted_relays.clone());
        tokio::spawn(async move {
            let mut l = Acceptor::new(l, "agent", "TCP");
            loop {
                let (s, peer) = l.accept().await;
                let Some(slot) = take_slot(&slots, &peer.to_string()) else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                // A peer that vanished without a FIN (host crash, cut link) would hold
                // its groups forever; keepalive ends an idle session within ~25 s. Keepalive
                // never probes while sent data (an ACK frame) waits unacknowledged, and
                // retransmission alone gives up only after ~15 minutes: TCP_USER_TIMEOUT
                // bounds that case to 30 s.
                let ka = socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(10))
                    .with_interval(Duration::from_secs(5))
                    .with_retries(3);
                let sock = socket2::SockRef::from(&s);
                if let Err(e) = sock.set_tcp_keepalive(&ka) {
                    tracing::warn!(%peer, error = %e, "cannot enable TCP keepalive");
                }
                if let Err(e) = sock.set_tcp_user_timeout(Some(DEAD_PEER_AFTER)) {
                    tracing::warn!(%peer, error = %e, "cannot set TCP_USER_TIMEOUT");
                }
                let (store, quotas) = (store.clone(), quotas.clone());
                match &tls {
                    None => {
                        tokio::spawn(async move {
                            session::run(store, quotas, s, peer.to_string(), None).await;
                            drop(slot);
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let relays = relays.clone();
                        tokio::spawn(async move {
                            tls_session(store, quotas, acceptor, s, peer.to_string(), &relays)
                                .await;
                            drop(slot);
                        });
                    }
                }
            }
        });
    }
    if let Some(path) = &opts.unix {
        let l = access.bind(path, "agent", "--unix").await?;
        tracing::info!(path = %path.display(), agent_uids = ?opts.agent_uids, "listening for agents on a unix socket");
        ready.push(format!("unix:{}", path.display()));
        let store = store.clone();
        let access = access.clone();
        let uids = opts.agent_uids.clone();
        let slots = Arc::new(Semaphore::new(opts.max_conns));
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut l = Acceptor::new(l, "agent", "unix");
            loop {
                let (s, _) = l.accept().await;
                n += 1;
                let peer = format!("unix#{n}");
                let Some(slot) = take_slot(&slots, &peer) else {
                    continue;
                };
                let Some(peer) = unix_peer(&access, &uids, s, peer) else {
                    continue;
                };
                let (store, quotas) = (store.clone(), quotas.clone());
                tokio::spawn(async move {
                    session::run(store, quotas, peer.0, peer.1, None).await;
                    drop(slot);
                });
            }
        });
    }
    if ready.is_empty() {
        anyhow::bail!("nothing to listen on for agents: give --listen and/or --unix");
    }
    Ok(ready)
}

/// Who may speak for an agent on the unix socket: root, or a uid given by `--agent-uid`. Returns
/// the stream and its peer label, or None (the refusal logged, and told to the peer when it
/// passed the socket's own check, in an ERROR frame sent in the background).
fn unix_peer(
    access: &LocalAccess,
    uids: &[u32],
    s: UnixStream,
    label: String,
) -> Option<(UnixStream, String)> {
    let peer = match access.check(&s) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(peer = %label, "agent socket: refused: {e}");
            return None;
        }
    };
    let label = format!("{label} (uid {} pid {})", peer.uid, peer.pid);
    if peer.uid == 0 || uids.contains(&peer.uid) {
        return Some((s, label));
    }
    let why = format!(
        "uid {} may not speak for agents on this socket: only root and the uids given by          --agent-uid may",
        peer.uid
    );
    tracing::warn!(peer = %label, "agent socket: refused: {why}");
    tokio::spawn(async move {
        let mut s = s;
        // Before any HELLO: the oldest frame version, which every agent reads.
        let frame = Message::Error(ErrorMsg {
            code: ErrorCode::Forbidden,
            message: why,
        })
        .to_frame_version(rewind_formats::FRAME_VERSION_MIN);
        let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&frame)).await;
        let _ = s.shutdown().await;
    });
    None
}

/// A slot of a listener's connection cap, or None (the connection is closed, and the refusal
/// logged at most once a second).
fn take_slot(slots: &Arc<Semaphore>, peer: &str) -> Option<OwnedSemaphorePermit> {
    match slots.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            static LAST: AtomicU64 = AtomicU64::new(0);
            let now = rewind_linux::clock::now_ms();
            if now.saturating_sub(LAST.swap(now, Ordering::Relaxed)) >= 1000 {
                tracing::warn!(%peer, "agent listener at its connection cap (--max-agent-conns): closing new connections");
            }
            None
        }
    }
}

/// Finish the TLS handshake (bounded in time), take the agent identity from the verified client
/// certificate, then run the session.
async fn tls_session(
    store: Arc<Store>,
    quotas: Arc<Quotas>,
    acceptor: tokio_rustls::TlsAcceptor,
    s: tokio::net::TcpStream,
    peer: String,
    trusted_relays: &[String],
) {
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let Some(identity) = crate::tls::peer_identity(stream.get_ref().1) else {
        tracing::warn!(%peer, "client certificate has no common name; closing");
        return;
    };
    // An NBD client's certificate (`ca issue --client`) may read exports, a site's drive the
    // control API: neither feeds a replica. Certificates without a kind predate kinds and were
    // all agents'.
    match crate::tls::peer_kind(stream.get_ref().1) {
        None | Some(crate::tls::ca::Kind::Agent) => {}
        Some(crate::tls::ca::Kind::Client) => {
            tracing::warn!(%peer, name = %identity, "an NBD client certificate tried to speak as an agent; closing");
            return;
        }
        // A relay speaks for the agents whose certificates it verified (see docs/SECURITY.md):
        // the HELLO's agent name is taken as the relay says, and the ownership checks apply to
        // it as to the agent itself. Only relays this target was told to trust.
        Some(crate::tls::ca::Kind::Relay) if trusted_relays.contains(&identity) => {
            tracing::info!(%peer, relay = %identity, "TLS session of a trusted relay");
            session::run(store, quotas, stream, peer, None).await;
            return;
        }
        Some(crate::tls::ca::Kind::Relay) => {
            let why = format!(
                "relay {identity} is not trusted by this target: start it with --trusted-relay {identity}"
            );
            tracing::warn!(%peer, relay = %identity, "refused: {why}");
            let mut stream = stream;
            let frame = Message::Error(ErrorMsg {
                code: ErrorCode::Forbidden,
                message: why,
            })
            .to_frame_version(rewind_formats::FRAME_VERSION_MIN);
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&frame)).await;
            let _ = stream.shutdown().await;
            return;
        }
        Some(kind) => {
            tracing::warn!(%peer, name = %identity, %kind, "a {kind} certificate tried to speak as an agent; closing");
            return;
        }
    }
    tracing::info!(%peer, agent = %identity, "TLS session authenticated");
    session::run(store, quotas, stream, peer, Some(identity)).await;
}
