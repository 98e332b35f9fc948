//! The relay's connection to the master target (`--upstream`): `tcp:HOST:PORT` with mutual TLS
//! (the relay's own certificate, see docs/SECURITY.md), plain TCP on loopback for tests
//! (`--insecure`), or `unix:PATH` (the target's agent socket on the same host).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A byte stream to the target, whatever carries it.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub(crate) type BoxStream = Pin<Box<dyn Stream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

use crate::tls::ca::{RELAY_CERT, RELAY_KEY};

pub(crate) enum Addr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

pub(crate) struct Upstream {
    pub(crate) addr: Addr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    pub(crate) label: String,
}

/// `tcp:HOST:PORT` or `unix:PATH`.
pub(crate) fn parse_addr(s: &str) -> Result<Addr, String> {
    if let Some(p) = s.strip_prefix("unix:") {
        if p.is_empty() {
            return Err(format!("{s:?}: give a socket path after unix:"));
        }
        return Ok(Addr::Unix(PathBuf::from(p)));
    }
    let Some(hp) = s.strip_prefix("tcp:") else {
        return Err(format!("{s:?}: give tcp:HOST:PORT or unix:PATH"));
    };
    let (host, port) = hp
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: no port (tcp:HOST:PORT)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: port {port:?} is not a number 1-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(format!("{s:?}: give a host and a port 1-65535"));
    }
    Ok(Addr::Tcp {
        host: host.to_string(),
        port,
    })
}

impl Upstream {
    /// Checks the choice of transport: TCP needs TLS (the relay's certificate in `tls_dir`)
    /// unless `insecure` and the host is a loopback address.
    pub(crate) fn new(addr: Addr, tls_dir: Option<&Path>, insecure: bool) -> Result<Upstream> {
        let label = match &addr {
            Addr::Tcp { host, port } => format!("tcp:{host}:{port}"),
            Addr::Unix(p) => format!("unix:{}", p.display()),
        };
        let tls = match (&addr, tls_dir) {
            (Addr::Unix(_), _) => None,
            (Addr::Tcp { host, .. }, Some(dir)) => {
                let cfg = crate::tls::client_config(
                    &dir.join(crate::tls::ca::CA_CERT),
                    &dir.join(RELAY_CERT),
                    &dir.join(RELAY_KEY),
                )
                .with_context(|| {
                    format!(
                        "the relay's upstream certificate in {} (`rewind-mtd ca issue --relay NAME`)",
                        dir.display()
                    )
                })?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .with_context(|| format!("upstream host {host:?}"))?;
                Some((tokio_rustls::TlsConnector::from(cfg), name))
            }
            (Addr::Tcp { host, .. }, None) => {
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback());
                if !(insecure && loopback) {
                    bail!("refusing plain TCP to the master target {label}: give --tls-dir, or --insecure with a loopback upstream (tests only)");
                }
                None
            }
        };
        Ok(Upstream { addr, tls, label })
    }

    pub(crate) async fn connect(&self) -> Result<BoxStream> {
        let go = async {
            Ok::<BoxStream, anyhow::Error>(match &self.addr {
                Addr::Unix(p) => Box::pin(UnixStream::connect(p).await?),
                Addr::Tcp { host, port } => {
                    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                        .await?
                        .collect();
                    let s = TcpStream::connect(&addrs[..]).await?;
                    s.set_nodelay(true)?;
                    let ka = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(10))
                        .with_interval(Duration::from_secs(5))
                        .with_retries(3);
                    let sock = socket2::SockRef::from(&s);
                    sock.set_tcp_keepalive(&ka)?;
                    sock.set_tcp_user_timeout(Some(Duration::from_secs(30)))?;
                    match &self.tls {
                        None => Box::pin(s),
                        Some((c, name)) => Box::pin(c.connect(name.clone(), s).await?),
                    }
                }
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, go)
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {} timed out", self.label))?
            .with_context(|| format!("connecting to the master target {}", self.label))
    }
}

pub(crate) type Shared = Arc<Upstream>;
