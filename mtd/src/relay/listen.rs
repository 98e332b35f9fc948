//! The relay's listeners: agents on TCP (mutual TLS, the same site CA as the master target; or
//! plain on loopback with `--insecure`, tests only) or on a unix socket (mode 0600: root, or the
//! relay's own user), and the metrics page.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::http::header;
use axum::routing::get;
use tokio::net::{TcpListener, UnixListener};

use super::{session, Relay, RelayArgs};
use crate::listen::Acceptor;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind every `--listen` and accept agents in the background; returns the bound addresses.
pub(super) async fn start(relay: &Arc<Relay>, args: &RelayArgs) -> Result<Vec<String>> {
    let mut ready = Vec::new();
    let tls = match &args.tls_dir {
        Some(d) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(d)
                .with_context(|| format!("the relay's server certificate in {}", d.display()))?,
        )),
        None => None,
    };
    for l in &args.listen {
        if let Some(p) = l.strip_prefix("unix:") {
            let path = PathBuf::from(p);
            let _ = std::fs::remove_file(&path);
            let ul = UnixListener::bind(&path)
                .with_context(|| format!("listening on {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            ready.push(format!("unix:{}", path.display()));
            let relay = relay.clone();
            tokio::spawn(async move {
                let mut a = Acceptor::new(ul, "relay agent", "unix");
                let mut n = 0u64;
                loop {
                    let (s, _) = a.accept().await;
                    n += 1;
                    let relay = relay.clone();
                    tokio::spawn(session::run(relay, s, format!("unix#{n}"), None));
                }
            });
            continue;
        }
        let Some(addr) = l.strip_prefix("tcp:") else {
            bail!("--listen {l:?}: give tcp:ADDR or unix:PATH");
        };
        let tl = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = tl.local_addr()?;
        if tls.is_none() && !(args.insecure && local.ip().is_loopback()) {
            bail!("refusing plain TCP for agents on {local}: give --tls-dir, or --insecure on a loopback address (tests only)");
        }
        ready.push(local.to_string());
        let relay = relay.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut a = Acceptor::new(tl, "relay agent", "TCP");
            loop {
                let (s, peer) = a.accept().await;
                let _ = s.set_nodelay(true);
                let relay = relay.clone();
                let peer = peer.to_string();
                match &tls {
                    None => {
                        tokio::spawn(session::run(relay, s, peer, None));
                    }
                    Some(acc) => {
                        let acc = acc.clone();
                        tokio::spawn(async move {
                            let stream =
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(s))
                                    .await
                                {
                                    Ok(Ok(st)) => st,
                                    Ok(Err(e)) => {
                                        tracing::warn!(%peer, error = %e, "TLS handshake refused");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::warn!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                };
                            let conn = stream.get_ref().1;
                            let Some(identity) = crate::tls::peer_identity(conn) else {
                                tracing::warn!(%peer, "client certificate has no common name");
                                return;
                            };
                            // Only an agent's certificate feeds a group: the relay speaks
                            // upstream for exactly the agents whose certificates it verified.
                            match crate::tls::peer_kind(conn) {
                                None | Some(crate::tls::ca::Kind::Agent) => {}
                                Some(kind) => {
                                    tracing::warn!(%peer, name = %identity, %kind, "a {kind} certificate tried to speak as an agent to the relay");
                                    return;
                                }
                            }
                            session::run(relay, stream, peer, Some(identity)).await;
                        });
                    }
                }
            }
        });
    }
    Ok(ready)
}

/// Serve `/metrics` on `addr`; returns the bound address.
pub(super) async fn metrics(relay: Arc<Relay>, addr: SocketAddr) -> Result<SocketAddr> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-listen {addr}"))?;
    let bound = l.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let r = relay.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    r.metrics.render(r.space.used(), r.space.limit()),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(l, app).await {
            tracing::error!(error = %e, "relay metrics listener stopped");
        }
    });
    Ok(bound)
}
