//! The agent-facing server: TCP and unix-socket listeners feeding sessions.

pub mod drain;
pub mod framing;
mod session;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::access::LocalAccess;

use crate::store::Store;

pub struct AgentListeners {
    /// TCP address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: Option<String>,
    pub unix: Option<PathBuf>,
    /// Mutual TLS on the TCP listener (`rewind-mtd ca init` makes the files).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Plain TCP without TLS: allowed only on a loopback address.
    pub insecure: bool,
}

/// A TLS handshake that has not finished by then is dropped (a stalled peer holds nothing).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the agent listeners and accept sessions in the background. Returns the bound addresses
/// (`HOST:PORT`, `unix:PATH`).
pub async fn start(
    store: Arc<Store>,
    opts: &AgentListeners,
    access: &LocalAccess,
) -> Result<Vec<String>> {
    let mut ready = Vec::new();
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
        let tls = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        tracing::info!(%local, tls = tls.is_some(), "listening for agents on TCP");
        ready.push(local.to_string());
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        // A peer that vanished without a FIN (host crash, cut link) would hold
                        // its groups forever; keepalive ends such a session within ~25 s.
                        let ka = socket2::TcpKeepalive::new()
                            .with_time(Duration::from_secs(10))
                            .with_interval(Duration::from_secs(5))
                            .with_retries(3);
                        if let Err(e) = socket2::SockRef::from(&s).set_tcp_keepalive(&ka) {
                            tracing::warn!(%peer, error = %e, "cannot enable TCP keepalive");
                        }
                        match &tls {
                            None => {
                                tokio::spawn(session::run(
                                    store.clone(),
                                    s,
                                    peer.to_string(),
                                    None,
                                ));
                            }
                            Some(acceptor) => {
                                tokio::spawn(tls_session(
                                    store.clone(),
                                    acceptor.clone(),
                                    s,
                                    peer.to_string(),
                                ));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                }
            }
        });
    }
    if let Some(path) = &opts.unix {
        let l = access.bind(path, "agent", "--unix").await?;
        tracing::info!(path = %path.display(), "listening for agents on a unix socket");
        ready.push(format!("unix:{}", path.display()));
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        n += 1;
                        tokio::spawn(session::run(store.clone(), s, format!("unix#{n}"), None));
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                }
            }
        });
    }
    if ready.is_empty() {
        anyhow::bail!("nothing to listen on for agents: give --listen and/or --unix");
    }
    Ok(ready)
}

/// Finish the TLS handshake (bounded in time), take the agent identity from the verified client
/// certificate, then run the session.
async fn tls_session(
    store: Arc<Store>,
    acceptor: tokio_rustls::TlsAcceptor,
    s: tokio::net::TcpStream,
    peer: String,
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
    tracing::info!(%peer, agent = %identity, "TLS session authenticated");
    session::run(store, stream, peer, Some(identity)).await;
}
