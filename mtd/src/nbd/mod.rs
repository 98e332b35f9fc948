//! NBD server (fixed newstyle): exports views and overlays to qemu, nbdcopy, nbdinfo and friends.
//!
//! - `proto`: wire constants and fixed-size messages
//! - `handshake`: option haggling (GO/INFO/LIST/EXPORT_NAME/STARTTLS, structured replies, meta
//!   contexts)
//! - `clients`: who may read and write which groups (the `--nbd-clients` file, and the grants of
//!   the unix socket's peers)
//! - `transmission`: the request reader; requests run concurrently on blocking threads
//! - `exec`: validating and running one request against the export's `Volume`
//! - `reply`: reply encoding and the single writer per connection
//! - `bufpool`, `conn`: payload buffers and per-connection state
//!
//! Export names are those of `crate::views::exports`: `GROUP/DISK`, `GROUP/DISK@POINT`,
//! `GROUP/DISK@overlay:NAME`. A connection opens its export once, during the handshake (the
//! NBD_OPT_INFO, NBD_OPT_SET_META_CONTEXT or NBD_OPT_GO that first names it; the usual
//! INFO -> GO sequence then describes and serves the same frozen point), and keeps that `Volume`
//! until it disconnects: a read-only `latest` export is frozen at the seq it had then. Every
//! connection to an overlay shares its one `Arc<Overlay>`, hence CAN_MULTI_CONN.
//!
//! # Security model
//!
//! Transports, from safest default:
//! - **The unix socket** (`--nbd-unix`, default `/run/rewind/nbd.sock`, on by default): mode 0660
//!   root:`rewind` (`--access-group`), and every connection's peer is checked with `SO_PEERCRED`
//!   before a byte of the handshake is sent; anyone else is closed at once (one log line per 10 s,
//!   with a count of those not logged). **Root** may read and write every export. **Members of the
//!   access group** may read every export (every point of every group, and overlays, read-only)
//!   but open no export writable, unless `--nbd-group-writable` says they may. TLS is not offered
//!   there (NBD_OPT_STARTTLS is unsupported): the kernel already says who the peer is.
//! - **TCP** (`--nbd-listen ADDR`, off by default) requires TLS: `--nbd-tls-dir DIR` (the site CA
//!   of `rewind-mtd ca init`: `ca.crt`, `server.crt`, `server.key`) and `--nbd-clients FILE`.
//!   Before NBD_OPT_STARTTLS every option but ABORT is answered NBD_REP_ERR_TLS_REQD (an early
//!   NBD_OPT_EXPORT_NAME is hung up on). The client must present a certificate from the site CA;
//!   its common name is looked up in the clients file (`clients` module): `read` groups may be
//!   listed and opened read-only at any point, `write` groups may also be opened writable
//!   (overlays, `@test`, `@live`). A certificate the file does not name gets nothing.
//! - **Plain TCP** only with `--nbd-insecure`, and only on loopback addresses: any local user may
//!   then read and write every export. For tests; a non-loopback address without TLS is refused
//!   at start.
//!
//! What a client may not read does not exist for it: NBD_OPT_LIST lists only the groups it may
//! read, and opening anything of another group fails exactly as a group that does not exist does.
//! An overlay of a group it may read but not write opens read-only (writes fail with EPERM).
//!
//! Failovers' and plans' boot commands run as root and get `nbd+unix://` URIs (the unix socket
//! comes first among the bound addresses); with TLS on TCP and no unix socket, they get none.
//!
//! Limits, per listener and per connection (`Limits`):
//! - at most `max_conns` connections per listener (`--nbd-max-conns`); one more is closed at once;
//! - the handshake, TLS included, must be done within `handshake` (`--nbd-handshake-timeout`);
//! - a read-only connection idle for `idle` (`--nbd-idle-timeout`) is closed; a client that stops
//!   reading replies is closed after as long (writable ones, a VM's disk, may idle);
//! - payload bytes in flight: 64 MiB per connection and 512 MiB for all of them together; past
//!   either, the client waits (see `transmission`); cached buffers are bounded likewise;
//! - a read-only point held open longer than `max_point_age` (`--nbd-max-point-age`) is released:
//!   retention wins, the connection's requests fail with EIO, and one line is logged;
//! - accept errors (out of descriptors) back off up to a second and log once per 10 s (`listen`).
//!
//! A live disk (`G/D@live`) becomes read-only for NBD when reverse replication starts, for
//! connections already open too (`exports::set_nbd_read_only`: their next write fails with EPERM),
//! since every write must then go through the replicating agent.

mod bufpool;
pub mod clients;
mod conn;
mod exec;
pub mod fuzzing;
mod handshake;
pub mod proto;
mod reply;
mod transmission;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::access::{LocalAccess, Role};
use crate::listen::Acceptor;
use crate::views::exports::Exports;

use clients::{Clients, Grants};
use handshake::{Ctx, Negotiated, Outcome, Tls};

#[derive(Default)]
pub struct NbdOptions {
    /// TCP address (none by default; `127.0.0.1:0` picks a free port). Needs `tls` (and
    /// `clients`), or `insecure` on a loopback address.
    pub listen: Option<String>,
    pub unix: Option<PathBuf>,
    /// STARTTLS with client certificates, required on TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// What each TLS client certificate may read and write.
    pub clients: Option<Arc<Clients>>,
    /// Plain TCP on loopback (tests only): every local user may read and write every export.
    pub insecure: bool,
    /// Members of the access group may open writable exports on the unix socket.
    pub group_writable: bool,
    pub limits: Limits,
}

/// See the module doc.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_conns: usize,
    pub handshake: Duration,
    /// `None`: no idle deadline.
    pub idle: Option<Duration>,
    /// `None`: a point may be held forever.
    pub max_point_age: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_conns: 256,
            handshake: Duration::from_secs(10),
            idle: Some(Duration::from_secs(3600)),
            max_point_age: Some(Duration::from_secs(3600)),
        }
    }
}

/// Payload bytes in flight across all connections.
const MAX_PAYLOAD_ALL: usize = 512 << 20;
/// A log line that could repeat per connection is written at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A log line written at most once per `LOG_EVERY`; the ones held back are counted.
#[derive(Default)]
struct LogLimit(Mutex<(Option<std::time::Instant>, u64)>);

impl LogLimit {
    /// `Some(held back since the last line)` when this one may be logged.
    fn allow(&self) -> Option<u64> {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match st.0 {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                st.1 += 1;
                None
            }
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

/// What every connection of the server shares.
struct Shared {
    exports: Arc<Exports>,
    limits: Limits,
    bounds: transmission::Bounds,
    log_refused: LogLimit,
    log_over_cap: LogLimit,
    log_handshake: LogLimit,
}

/// Check the TCP settings: TLS, or `--nbd-insecure` on loopback only.
async fn check_tcp(addr: &str, opts: &NbdOptions) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("NBD: resolving --nbd-listen {addr}"))?
        .collect();
    match (&opts.tls, opts.insecure) {
        (Some(_), true) => {
            bail!("NBD: --nbd-tls-dir and --nbd-insecure together: choose TLS or plain (tests)")
        }
        (Some(_), false) if opts.clients.is_none() => bail!(
            "NBD: TLS on {addr} needs --nbd-clients FILE: which certificates may read and write which groups"
        ),
        (Some(_), false) => {}
        (None, true) => {
            if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                bail!(
                    "NBD: refusing plain TCP on {addr} ({a} is not a loopback address): use --nbd-tls-dir DIR and --nbd-clients FILE"
                );
            }
        }
        (None, false) => bail!(
            "NBD: refusing plain TCP on {addr}: NBD over TCP needs --nbd-tls-dir DIR and --nbd-clients FILE (or --nbd-insecure, for tests, on a loopback address)"
        ),
    }
    Ok(addrs)
}

/// Bind the listeners and serve clients in the background. Returns the bound addresses, the
/// unix socket first (`unix:PATH`, then `HOST:PORT` for TCP): failovers and plans give the first
/// to boot commands, which run as root and need no certificate there.
pub async fn start(
    exports: Arc<Exports>,
    opts: &NbdOptions,
    access: &LocalAccess,
) -> Result<Vec<String>> {
    let tcp = match &opts.listen {
        Some(addr) => Some(check_tcp(addr, opts).await?),
        None => None,
    };
    if opts.listen.is_none() && (opts.tls.is_some() || opts.clients.is_some()) {
        tracing::warn!("NBD: --nbd-tls-dir/--nbd-clients without --nbd-listen: no TCP listener");
    }
    let shared = Arc::new(Shared {
        exports,
        limits: opts.limits.clone(),
        bounds: transmission::Bounds {
            payload: Arc::new(Semaphore::new(
                MAX_PAYLOAD_ALL / transmission::BYTE_UNIT as usize,
            )),
            idle: opts.limits.idle,
        },
        log_refused: LogLimit::default(),
        log_over_cap: LogLimit::default(),
        log_handshake: LogLimit::default(),
    });
    let mut bound = Vec::new();
    if let Some(path) = &opts.unix {
        let l = access.bind(path, "NBD", "--nbd-unix").await?;
        tracing::info!(path = %path.display(), "NBD listening on a unix socket");
        bound.push(format!("unix:{}", path.display()));
        let (sh, access, group_writable) = (shared.clone(), access.clone(), opts.group_writable);
        let cap = Arc::new(Semaphore::new(opts.limits.max_conns));
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut l = Acceptor::new(l, "NBD", "unix");
            loop {
                let (s, _) = l.accept().await;
                n += 1;
                let peer = format!("unix#{n}");
                let p = match access.check(&s) {
                    Ok(p) => p,
                    Err(r) => {
                        if let Some(held) = sh.log_refused.allow() {
                            tracing::warn!(%peer, uid = r.uid, pid = r.pid, not_logged = held, "NBD: refused a connection on the unix socket: {r}");
                        }
                        continue;
                    }
                };
                let Some(permit) = admit(&sh, &cap, "unix", &peer) else {
                    continue;
                };
                let grants = match p.role {
                    Role::Root => Grants::all("root"),
                    Role::Member if group_writable => Grants::all(format!("uid {}", p.uid)),
                    Role::Member => Grants::read_all(format!("uid {}", p.uid)),
                };
                tokio::spawn(serve(sh.clone(), s, peer, grants, permit));
            }
        });
    }
    if let (Some(addr), Some(addrs)) = (&opts.listen, tcp) {
        let l = TcpListener::bind(&addrs[..])
            .await
            .with_context(|| format!("NBD: listening on {addr}"))?;
        let local = l.local_addr()?;
        tracing::info!(%local, tls = opts.tls.is_some(), "NBD listening on TCP");
        bound.push(local.to_string());
        let sh = shared.clone();
        let tls = opts
            .tls
            .clone()
            .map(|c| (tokio_rustls::TlsAcceptor::from(c), opts.clients.clone()));
        let cap = Arc::new(Semaphore::new(opts.limits.max_conns));
        tokio::spawn(async move {
            let mut l = Acceptor::new(l, "NBD", "TCP");
            loop {
                let (s, peer) = l.accept().await;
                let peer = peer.to_string();
                let Some(permit) = admit(&sh, &cap, "TCP", &peer) else {
                    continue;
                };
                // Replies are small and latency-bound (a 4 KiB read's reply must not wait for
                // Nagle); big ones go out in full writes anyway.
                let _ = s.set_nodelay(true);
                match &tls {
                    Some((acceptor, clients)) => {
                        let clients = clients.clone().unwrap_or_default();
                        tokio::spawn(serve_tls(
                            sh.clone(),
                            s,
                            peer,
                            acceptor.clone(),
                            clients,
                            permit,
                        ));
                    }
                    None => {
                        let grants = Grants::all("insecure TCP");
                        tokio::spawn(serve(sh.clone(), s, peer, grants, permit));
                    }
                }
            }
        });
    }
    Ok(bound)
}

/// A slot under the listener's connection cap, or `None` (the connection is closed).
fn admit(
    sh: &Shared,
    cap: &Arc<Semaphore>,
    listener: &str,
    peer: &str,
) -> Option<OwnedSemaphorePermit> {
    match cap.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            if let Some(held) = sh.log_over_cap.allow() {
                tracing::warn!(
                    listener,
                    peer,
                    max = sh.limits.max_conns,
                    not_logged = held,
                    "NBD: too many connections (--nbd-max-conns); closing new ones"
                );
            }
            None
        }
    }
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

/// Log how a handshake that did not end in an export ended.
fn handshake_ended<T>(
    sh: &Shared,
    peer: &str,
    r: Result<std::io::Result<T>, tokio::time::error::Elapsed>,
) -> Option<T> {
    match r {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            // Mostly clients that probe and hang up (nbdinfo --list, health checks).
            tracing::debug!(peer, error = %e, "nbd client left during the handshake");
            None
        }
        Err(_) => {
            if let Some(held) = sh.log_handshake.allow() {
                tracing::info!(
                    peer,
                    limit = ?sh.limits.handshake,
                    not_logged = held,
                    "nbd handshake not done in time (--nbd-handshake-timeout); closed"
                );
            }
            None
        }
    }
}

/// One client without TLS (the unix socket, insecure TCP): handshake, then transmission.
async fn serve<S: IntoHalves>(
    sh: Arc<Shared>,
    mut s: S,
    peer: String,
    grants: Grants,
    _permit: OwnedSemaphorePermit,
) {
    tracing::debug!(%peer, who = %grants.who, "nbd client connected");
    let deadline = Instant::now() + sh.limits.handshake;
    let ctx = Ctx {
        exports: &sh.exports,
        grants: &grants,
        peer: &peer,
    };
    let r = timeout_at(deadline, async {
        match handshake::greet(&mut s, &peer).await? {
            Some(no_zeroes) => handshake::options(&mut s, &ctx, no_zeroes, Tls::Off).await,
            None => Ok(Outcome::Closed),
        }
    })
    .await;
    let Some(Outcome::Go(n)) = handshake_ended(&sh, &peer, r) else {
        return;
    };
    let (r, w) = s.into_halves();
    transmit(&sh, r, w, n, peer, grants.who).await;
}

/// One TCP client with TLS required: greeting and STARTTLS in the clear, the TLS handshake, then
/// the options and transmission over TLS, with the grants of the certificate's name.
async fn serve_tls(
    sh: Arc<Shared>,
    mut s: TcpStream,
    peer: String,
    acceptor: tokio_rustls::TlsAcceptor,
    clients: Arc<Clients>,
    _permit: OwnedSemaphorePermit,
) {
    let deadline = Instant::now() + sh.limits.handshake;
    let nobody = Grants::nothing("before TLS");
    let ctx = Ctx {
        exports: &sh.exports,
        grants: &nobody,
        peer: &peer,
    };
    let r = timeout_at(deadline, async {
        let Some(no_zeroes) = handshake::greet(&mut s, &peer).await? else {
            return Ok(None);
        };
        Ok(
            match handshake::options(&mut s, &ctx, no_zeroes, Tls::Required).await? {
                Outcome::StartTls => Some(no_zeroes),
                _ => None,
            },
        )
    })
    .await;
    let Some(Some(no_zeroes)) = handshake_ended(&sh, &peer, r) else {
        return;
    };
    let mut tls = match timeout_at(deadline, acceptor.accept(s)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            if let Some(held) = sh.log_handshake.allow() {
                tracing::info!(%peer, error = %e, not_logged = held, "nbd TLS handshake failed");
            }
            return;
        }
        Err(e) => {
            handshake_ended::<()>(&sh, &peer, Err(e));
            return;
        }
    };
    // A site's certificate drives the control API; it is not an NBD client whatever its name.
    let site = crate::tls::peer_kind(tls.get_ref().1) == Some(crate::tls::ca::Kind::Site);
    let grants = match crate::tls::peer_identity(tls.get_ref().1) {
        Some(name) if site => Grants::nothing(format!("site certificate {name}")),
        Some(name) => clients.grants(&name),
        None => Grants::nothing("a certificate without a common name"),
    };
    tracing::info!(%peer, who = %grants.who, "nbd TLS session authenticated");
    let ctx = Ctx {
        exports: &sh.exports,
        grants: &grants,
        peer: &peer,
    };
    let r = timeout_at(
        deadline,
        handshake::options(&mut tls, &ctx, no_zeroes, Tls::Done),
    )
    .await;
    let Some(Outcome::Go(n)) = handshake_ended(&sh, &peer, r) else {
        return;
    };
    let (r, w) = tokio::io::split(tls);
    transmit(&sh, r, w, n, peer, grants.who).await;
}

/// The transmission phase of a negotiated connection, with its point-age deadline.
async fn transmit<R, W>(sh: &Shared, r: R, w: W, n: Negotiated, peer: String, who: String)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let is_point = n.volume.is_point();
    let conn = Arc::new(conn::Conn {
        peer,
        who,
        size: n.volume.size_bytes(),
        writable: n.volume.writable(),
        export: n.export,
        volume: RwLock::new(Some(Arc::new(n.volume))),
        structured: n.structured,
        base_allocation: n.base_allocation,
        pool: bufpool::new(),
        stats: Default::default(),
    });
    let seq = conn.volume().map_or(0, |v| v.seq());
    tracing::info!(
        peer = %conn.peer,
        who = %conn.who,
        export = %conn.export,
        seq,
        size = conn.size,
        writable = conn.writable,
        structured = conn.structured,
        base_allocation = conn.base_allocation,
        "nbd client connected"
    );
    // Past the maximum age, retention wins over a reader holding a point: let go of it.
    let expiry = match sh.limits.max_point_age.filter(|_| is_point) {
        Some(age) => {
            let weak = Arc::downgrade(&conn);
            Some(tokio::spawn(async move {
                tokio::time::sleep(age).await;
                if let Some(c) = weak.upgrade() {
                    if c.release() {
                        tracing::warn!(
                            peer = %c.peer,
                            who = %c.who,
                            export = %c.export,
                            seq,
                            max_age = ?age,
                            "nbd client held its point past --nbd-max-point-age: released so retention can merge; its requests now fail with EIO"
                        );
                    }
                }
            }))
        }
        None => None,
    };
    transmission::run(conn, r, w, &sh.bounds).await;
    if let Some(t) = expiry {
        t.abort();
    }
}
