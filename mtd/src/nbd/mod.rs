//! NBD server (fixed newstyle): exports views and overlays to qemu, nbdcopy, nbdinfo and friends.
//!
//! - `proto`: wire constants and fixed-size messages
//! - `handshake`: option haggling (GO/INFO/LIST/EXPORT_NAME, structured replies, meta contexts)
//! - `transmission`: the request reader; requests run concurrently on blocking threads
//! - `exec`: validating and running one request against the export's `Volume`
//! - `reply`: reply encoding and the single writer per connection
//! - `bufpool`, `conn`: payload buffers and per-connection state
//!
//! Export names are those of `crate::exports`: `GROUP/DISK`, `GROUP/DISK@POINT`,
//! `GROUP/DISK@overlay:NAME`. A connection opens its export once, during the handshake (the
//! NBD_OPT_INFO, NBD_OPT_SET_META_CONTEXT or NBD_OPT_GO that first names it; the usual
//! INFO -> GO sequence then describes and serves the same frozen point), and keeps that `Volume`
//! until it disconnects: a read-only `latest` export is frozen at the seq it had then. Every
//! connection to an overlay shares its one `Arc<Overlay>`, hence CAN_MULTI_CONN.

mod bufpool;
mod conn;
mod exec;
pub mod fuzzing;
mod handshake;
pub mod proto;
mod reply;
mod transmission;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::access::LocalAccess;

use crate::exports::Exports;

pub struct NbdOptions {
    /// TCP address (`127.0.0.1:10809` by default; `127.0.0.1:0` picks a free port).
    pub listen: Option<String>,
    pub unix: Option<PathBuf>,
}

/// Bind the listeners and serve clients in the background. Returns the bound addresses
/// (`HOST:PORT` for TCP, `unix:PATH`).
pub async fn start(
    exports: Arc<Exports>,
    opts: &NbdOptions,
    access: &LocalAccess,
) -> Result<Vec<String>> {
    let mut bound = Vec::new();
    if let Some(addr) = &opts.listen {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("NBD: listening on {addr}"))?;
        let local = l.local_addr()?;
        tracing::info!(%local, "NBD listening on TCP");
        bound.push(local.to_string());
        let exports = exports.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, peer)) => {
                        // Replies are small and latency-bound (a 4 KiB read's reply must not
                        // wait for Nagle); big ones go out in full writes anyway.
                        let _ = s.set_nodelay(true);
                        tokio::spawn(serve(exports.clone(), s, peer.to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        // E.g. out of file descriptors: do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    if let Some(path) = &opts.unix {
        let l = access.bind(path, "NBD", "--nbd-unix").await?;
        tracing::info!(path = %path.display(), "NBD listening on a unix socket");
        bound.push(format!("unix:{}", path.display()));
        let exports = exports.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        n += 1;
                        tokio::spawn(serve(exports.clone(), s, format!("unix#{n}")));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NBD accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    Ok(bound)
}

/// Streams that split into independently owned halves (so the reader and the writer can be
/// separate tasks without a lock between them).
trait IntoHalves: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type R: AsyncRead + Unpin + Send + 'static;
    type W: AsyncWrite + Unpin + Send + 'static;
    fn into_halves(self) -> (Self::R, Self::W);
}

impl IntoHalves for TcpStream {
    type R = tokio::net::tcp::OwnedReadHalf;
    type W = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::R, Self::W) {
        self.into_split()
    }
}

impl IntoHalves for UnixStream {
    type R = tokio::net::unix::OwnedReadHalf;
    type W = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> (Self::R, Self::W) {
        self.into_split()
    }
}

/// One client: handshake, then transmission.
async fn serve<S: IntoHalves>(exports: Arc<Exports>, mut s: S, peer: String) {
    tracing::debug!(%peer, "nbd client connected");
    let n = match handshake::negotiate(&mut s, &exports, &peer).await {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => {
            // Mostly clients that probe and hang up (nbdinfo --list, health checks).
            tracing::debug!(%peer, error = %e, "nbd client left during the handshake");
            return;
        }
    };
    let conn = Arc::new(conn::Conn {
        peer,
        size: n.volume.size_bytes(),
        writable: n.volume.writable(),
        export: n.export,
        volume: n.volume,
        structured: n.structured,
        base_allocation: n.base_allocation,
        pool: bufpool::BufPool::new(),
        stats: Default::default(),
    });
    tracing::info!(
        peer = %conn.peer,
        export = %conn.export,
        seq = conn.volume.seq(),
        size = conn.size,
        writable = conn.writable,
        structured = conn.structured,
        base_allocation = conn.base_allocation,
        "nbd client connected"
    );
    let (r, w) = s.into_halves();
    transmission::run(conn, r, w).await;
}
