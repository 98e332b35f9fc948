//! The connection to the target and frame IO (plain unix or loopback TCP until TLS lands).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rewind_formats::{FrameHeader, Message, FRAME_HEADER_LEN};

use crate::config::TargetAddr;
use crate::error::{Error, Result};

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    pub fn connect(addr: &TargetAddr) -> Result<Conn> {
        let lost = |e: io::Error| Error::Connection {
            addr: addr.to_string(),
            why: e.to_string(),
        };
        match addr {
            TargetAddr::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, CONNECT_TIMEOUT).map_err(lost)?;
                s.set_nodelay(true).map_err(lost)?;
                Ok(Conn::Tcp(s))
            }
            TargetAddr::Unix(p) => Ok(Conn::Unix(UnixStream::connect(p).map_err(lost)?)),
        }
    }

    /// A second handle on the socket: the ACK reader reads while the sender writes.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }

    pub fn shutdown(&self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// Reads one message; `Ok(None)` when the target closed the connection between frames.
/// Frames are validated (header checksum, length cap, payload checksum) before decoding.
pub fn read_message(r: &mut impl Read, addr: &str) -> Result<Option<Message>> {
    let lost = |e: io::Error| Error::Connection {
        addr: addr.to_string(),
        why: e.to_string(),
    };
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    let mut got = 0;
    while got < hdr.len() {
        match r.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(lost(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(lost(e)),
        }
    }
    let header = FrameHeader::decode(&hdr).map_err(|source| Error::Decode {
        what: "frame header",
        source,
    })?;
    let mut payload = vec![0u8; header.payload_len as usize];
    r.read_exact(&mut payload).map_err(lost)?;
    header
        .verify_payload(&payload)
        .map_err(|source| Error::Decode {
            what: "frame payload",
            source,
        })?;
    Message::decode(header.kind, &payload)
        .map(Some)
        .map_err(|source| Error::Decode {
            what: "message",
            source,
        })
}
