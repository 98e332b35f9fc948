//! The control API over TCP with mutual TLS (`serve --control-listen HOST:PORT --tls-dir DIR`),
//! for the configuration server (`rewind-site`): the same routes as the unix socket.
//!
//! Only a certificate of kind site (`ca issue --site`, organisational unit "site") from the CA of
//! `--tls-dir`, not revoked (the same [`crate::tls::RevocationCheck`] as agents'), gets anything:
//! it has the rights root has on the unix socket. A certificate from another CA, revoked, or none
//! is refused at the handshake; one of the site's agents, NBD clients or servers completes the
//! handshake (the chain is good) and then gets a 403 for every request saying why.
//!
//! Handshakes run in their own tasks with a timeout, so one slow client holds up nobody; the
//! connections that complete one are handed to axum through a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::authorize::{self, Caller};
use super::Control;
use crate::listen::Acceptor;
use crate::tls::ca::Kind;

/// A client must finish its TLS handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once on the TCP listener; more are closed at once.
const MAX_CONNS: usize = 64;

/// Who a verified certificate makes the caller.
fn caller(conn: &rustls::ServerConnection) -> Caller {
    let name = crate::tls::peer_identity(conn);
    match (crate::tls::peer_kind(conn), name) {
        (Some(Kind::Site), Some(name)) => Caller::Site { name },
        (kind, name) => {
            Caller::Refused(format!(
            "certificate {} is {}: only a site certificate (`rewind-mtd ca issue --site`) may use \
             the control API over TCP",
            name.as_deref().unwrap_or("(no common name)"),
            kind.map_or("an agent's (no kind)".to_string(), |k| format!("of kind {k}")),
        ))
        }
    }
}

/// Bind `addr` and serve the control API there in the background. Returns the bound address.
pub async fn start(
    control: Arc<Control>,
    addr: &str,
    tls: Arc<rustls::ServerConfig>,
) -> Result<SocketAddr> {
    let tcp = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the control API's TCP listener {addr}"))?;
    let local = tcp.local_addr()?;
    tracing::info!(addr = %local, "control API listening on TCP (mutual TLS, site certificates only)");
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    tokio::spawn(async move {
        let mut tcp = Acceptor::new(tcp, "control API", "TCP");
        loop {
            let (s, peer) = tcp.accept().await;
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "control API: {MAX_CONNS} connections open; closing");
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => {
                        let who = caller(tls.get_ref().1);
                        if let Caller::Site { name } = &who {
                            tracing::info!(%peer, site = %name, "control API: site authenticated");
                        }
                        let _ = tx.send((Conn { tls, _slot: slot }, who)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "control API: TLS handshake refused")
                    }
                    Err(_) => tracing::warn!(%peer, "control API: TLS handshake timed out"),
                }
            });
        }
    });
    let app = super::routes::router(control).layer(axum::middleware::from_fn(authorize::authorize));
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<Caller>();
        if let Err(e) = axum::serve(Handshaken { rx }, app).await {
            tracing::error!(error = %e, "control API (TCP) stopped");
        }
    });
    Ok(local)
}

/// A TLS connection and its place among the [`MAX_CONNS`] (freed when it closes).
pub struct Conn {
    tls: TlsStream<TcpStream>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

/// The connections whose handshake completed, with who they are.
pub struct Handshaken {
    rx: mpsc::Receiver<(Conn, Caller)>,
}

impl Listener for Handshaken {
    type Io = Conn;
    type Addr = Caller;

    async fn accept(&mut self) -> (Conn, Caller) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends with the runtime: wait for that.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Caller> {
        Ok(Caller::Refused("the listener itself".into()))
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, Handshaken>> for Caller {
    fn connect_info(stream: IncomingStream<'_, Handshaken>) -> Self {
        stream.remote_addr().clone()
    }
}
