//! The connection to the target and frame IO: a unix socket, mutual TLS over TCP, or plain TCP
//! (`--insecure`, loopback only; `Settings::validate` enforces it).
//!
//! A session has two users of one connection: the sender writes frames while the ACK reader
//! reads. For TLS both share one `rustls::ClientConnection` behind a mutex, over a non-blocking
//! socket: each takes the lock only for non-blocking steps (feed plaintext, move TLS records
//! to or from the socket) and waits for the socket with poll(2) outside it. Blocking with the
//! lock held could deadlock: a writer stuck on a full send buffer while the reader cannot take
//! the lock to read the ACKs that let the target go on reading.

#[cfg(test)]
mod tests;
mod tls;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rewind_formats::frame::blocking::{self, ReadError};
use rewind_formats::Message;

use crate::config::TargetAddr;
use crate::error::{Error, Result};
pub use tls::{TlsClient, TlsConn};

/// How long a connect may take (and, separately, the TLS handshake after it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A silent peer (a network cut, a target host that died) is given up on after about this long:
/// TCP keepalive probes an idle connection, and unacknowledged sent data times out. Without it
/// an idle session would look connected for ever, and a busy one would hang in a write for the
/// kernel's retransmission timeout (many minutes) before reconnecting.
const DEAD_PEER_AFTER: Duration = Duration::from_secs(30);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 4;

fn detect_dead_peer(s: &TcpStream) -> io::Result<()> {
    let sock = socket2::SockRef::from(s);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    sock.set_tcp_user_timeout(Some(DEAD_PEER_AFTER))
}

pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(TlsConn),
}

impl Conn {
    /// Connects to `addr`; over TLS when `tls` is given (which `Settings::validate` requires
    /// for every TCP target not explicitly `--insecure`).
    pub fn connect(addr: &TargetAddr, tls: Option<&TlsClient>) -> Result<Conn> {
        let lost = |e: io::Error| Error::Connection {
            addr: addr.to_string(),
            why: e.to_string(),
        };
        match addr {
            TargetAddr::Tcp { host, addr: a } => {
                let s = TcpStream::connect_timeout(a, CONNECT_TIMEOUT).map_err(lost)?;
                s.set_nodelay(true).map_err(lost)?;
                detect_dead_peer(&s).map_err(lost)?;
                match tls {
                    None => Ok(Conn::Tcp(s)),
                    Some(t) => Ok(Conn::Tls(TlsConn::handshake(
                        s,
                        t,
                        host,
                        &addr.to_string(),
                        CONNECT_TIMEOUT,
                    )?)),
                }
            }
            TargetAddr::Unix(p) => Ok(Conn::Unix(UnixStream::connect(p).map_err(lost)?)),
        }
    }

    /// A second handle on the socket: the ACK reader reads while the sender writes.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tls(s) => Conn::Tls(s.clone()),
        })
    }

    pub fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
            Conn::Tls(s) => {
                s.shutdown();
                Ok(())
            }
        };
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tls(s) => {
                s.set_read_timeout(t);
                Ok(())
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
            Conn::Tls(_) => Ok(()),
        }
    }
}

/// Reads one message; `Ok(None)` when the target closed the connection between frames.
/// Frames are validated (header checksum, length cap, payload checksum) before decoding.
pub fn read_message(r: &mut impl Read, addr: &str) -> Result<Option<Message>> {
    let decode = |what, source| Error::Decode { what, source };
    blocking::read_message(r).map_err(|e| match e {
        ReadError::Header(e) => decode("frame header", e),
        ReadError::Payload(e) => decode("frame payload", e),
        ReadError::Message(e) => decode("message", e),
        ReadError::Cut { .. } | ReadError::Io(_) => Error::Connection {
            addr: addr.to_string(),
            why: e.to_string(),
        },
    })
}
